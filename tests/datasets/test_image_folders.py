"""OODImageFolder on tiny image files written in the ODIN and OpenOOD layouts."""

# ruff: noqa: E402 (the imports follow the importorskip guards)

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from torch.utils.data import DataLoader

from sklearn_ood.datasets import OODImageFolder, _image_folders


def _save(file, pixels):
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(file)
    return file


def _random_image(rng, height, width, channels=3):
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


# Layouts of the ODIN downloads, Textures, Places365 and TinyImageNet as
# extracted: (top folder passed as root, relative image paths, image size).
LAYOUTS = {
    "Imagenet_resize": (
        ["Imagenet_resize/0.jpg", "Imagenet_resize/1.jpg", "Imagenet_resize/10.jpg"],
        (32, 32),
    ),
    "LSUN": (["test/0.jpg", "test/1.jpg"], (36, 36)),
    "iSUN": (["iSUN_patches/a.jpeg", "iSUN_patches/b.jpeg"], (44, 62)),
    "dtd": (
        ["images/banded/banded_0001.jpg", "images/zigzagged/zigzagged_0001.jpg"],
        (300, 200),
    ),
    "places365": (["a/airfield/00000001.jpg", "b/bakery/00000002.png"], (64, 48)),
    "tin": (["test/n014/val_1.JPEG", "test/n015/val_2.JPEG"], (64, 64)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_are_found_and_loaded(tmp_path, layout):
    names, (height, width) = LAYOUTS[layout]
    rng = np.random.default_rng(0)
    top = tmp_path / layout
    for name in names:
        _save(top / name, _random_image(rng, height, width))
    (top / "README.txt").write_text("not an image")
    dataset = OODImageFolder(top, size=32)
    assert len(dataset) == len(names)
    assert dataset.files == sorted(top / name for name in names)
    # The inner folder of an ODIN archive works as root too.
    inner = (top / names[0]).parent
    assert len(OODImageFolder(inner)) == sum((top / n).parent == inner for n in names)
    for image, label in (dataset[0], dataset[len(names) - 1]):
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert label == -1


def test_pixels_are_exact_channels_first(tmp_path):
    pixels = _random_image(np.random.default_rng(0), 8, 8)
    _save(tmp_path / "a.png", pixels)  # lossless, already size x size
    image, _ = OODImageFolder(tmp_path, size=8)[0]
    expected = pixels.transpose(2, 0, 1).astype(np.float32) / 255
    np.testing.assert_array_equal(image.numpy(), expected)


def test_grayscale_and_rgb_conversion(tmp_path):
    gray = _random_image(np.random.default_rng(0), 8, 8, channels=1)
    _save(tmp_path / "gray.png", gray)
    rgb, _ = OODImageFolder(tmp_path, size=8)[0]
    assert rgb.shape == (3, 8, 8)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[channel].numpy(), gray / np.float32(255))
    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 255
    _save(tmp_path / "red.png", red)
    dataset = OODImageFolder(tmp_path, size=8, mode="L")
    gray_item, red_item = dataset[0][0], dataset[1][0]
    assert gray_item.shape == red_item.shape == (1, 8, 8)
    np.testing.assert_array_equal(gray_item[0].numpy(), gray / np.float32(255))
    # PIL's luma: L = 0.299 R + 0.587 G + 0.114 B.
    np.testing.assert_allclose(red_item.numpy(), 76 / 255, atol=1 / 255)


def test_palette_with_transparency_converts_without_warning(tmp_path):
    image = Image.new("P", (6, 6), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        item, _ = OODImageFolder(tmp_path, size=6)[0]
    np.testing.assert_array_equal(item[0].numpy(), np.ones((6, 6), np.float32))


def test_resize_versus_center_crop(tmp_path):
    # 60 wide x 20 high: black | white | black thirds.
    pixels = np.zeros((20, 60), dtype=np.uint8)
    pixels[:, 20:40] = 255
    _save(tmp_path / "wide.png", pixels)
    cropped, _ = OODImageFolder(tmp_path, size=20, resize="center-crop", mode="L")[0]
    squashed, _ = OODImageFolder(tmp_path, size=20, resize="resize", mode="L")[0]
    assert cropped.shape == squashed.shape == (1, 20, 20)
    # The central square is the white third, untouched (no scaling needed).
    np.testing.assert_array_equal(cropped.numpy(), np.ones((1, 20, 20), np.float32))
    # Squashed, the black thirds stay at the sides.
    assert (
        float(squashed[0, :, 0].max()) < 0.1 and float(squashed[0, :, 10].min()) > 0.9
    )


def test_center_crop_scales_the_shorter_side(tmp_path):
    # 40 high x 20 wide: a white top half, black bottom half.
    pixels = np.zeros((40, 20), dtype=np.uint8)
    pixels[:20] = 255
    _save(tmp_path / "tall.png", pixels)
    image, _ = OODImageFolder(tmp_path, size=10, resize="center-crop", mode="L")[0]
    # Scaled to 10 x 20, the centre 10 x 10 keeps the middle: half white.
    assert image.shape == (1, 10, 10)
    assert float(image[0, :4].min()) > 0.9 and float(image[0, 6:].max()) < 0.1


def test_upscaling_small_images(tmp_path):
    _save(tmp_path / "tiny.png", np.full((4, 4, 3), 200, dtype=np.uint8))
    for resize in ("resize", "center-crop"):
        image, _ = OODImageFolder(tmp_path, size=16, resize=resize)[0]
        assert image.shape == (3, 16, 16)
        np.testing.assert_allclose(image.numpy(), 200 / 255, atol=1e-6)


def test_hidden_and_other_files_are_skipped(tmp_path):
    rng = np.random.default_rng(0)
    _save(tmp_path / "a" / "1.jpg", _random_image(rng, 8, 8))
    _save(tmp_path / "a" / "2.PNG", _random_image(rng, 8, 8))
    (tmp_path / "a" / "._1.jpg").write_bytes(b"macOS resource fork")
    (tmp_path / ".hidden").mkdir()
    _save(tmp_path / ".hidden" / "3.jpg", _random_image(rng, 8, 8))
    (tmp_path / "labels.txt").write_text("1 2")
    dataset = OODImageFolder(tmp_path)
    assert [file.name for file in dataset.files] == ["1.jpg", "2.PNG"]
    only_png = OODImageFolder(tmp_path, extensions=["png"])
    assert [file.name for file in only_png.files] == ["2.PNG"]


def test_openood_image_list(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "images_classic"
    names = ["tin/test/n02/b.JPEG", "tin/test/n01/a.JPEG", "texture/x/c.jpg"]
    for name in names:
        _save(images / name, _random_image(rng, 64, 64))
    _save(images / "tin" / "test" / "n01" / "unlisted.JPEG", _random_image(rng, 8, 8))
    image_list = tmp_path / "benchmark_imglist" / "cifar10" / "test_tin.txt"
    image_list.parent.mkdir(parents=True)
    image_list.write_text(
        f'{names[0]} -1\n\n# a comment\n{names[1]} -1\n{names[2]} {{"label": 3}}\n'
    )
    dataset = OODImageFolder(images, image_list=image_list, size=32)
    # The list's order is kept; the unlisted file is left out.
    assert dataset.files == [images / name for name in names]
    image, label = dataset[1]
    assert image.shape == (3, 32, 32) and label == -1
    assert "test_tin.txt" in repr(dataset)


def test_getitem_opens_one_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for i in range(4):
        _save(tmp_path / f"{i}.png", _random_image(rng, 8, 8))
    opened = []
    real_open = Image.open

    def counting_open(file, *args, **kwargs):
        opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(_image_folders.Image, "open", counting_open)
    dataset = OODImageFolder(tmp_path, size=8)
    assert opened == []  # listing the folder reads no image
    dataset[2]
    assert opened == [tmp_path / "2.png"]
    dataset[-1]
    assert opened[-1] == tmp_path / "3.png" and len(opened) == 2


def test_dataloader_batches(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        _save(tmp_path / f"{i}.jpg", _random_image(rng, 10 + i, 12))
    loader = DataLoader(OODImageFolder(tmp_path, size=16), batch_size=2)
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 3, 16, 16)] * 2 + [
        (1, 3, 16, 16)
    ]
    assert all(bool((y == -1).all()) for _, y in batches)


def test_feature_transformer_consumes_it(tmp_path):
    from sklearn_ood.torch import DigitsCNN, TorchFeatureTransformer

    rng = np.random.default_rng(0)
    for i in range(5):
        _save(tmp_path / f"{i}.png", _random_image(rng, 20, 24))
    dataset = OODImageFolder(tmp_path, size=16)
    torch.manual_seed(0)
    model = DigitsCNN(n_classes=3, width=4, in_channels=3)
    transformer = TorchFeatureTransformer(model, layer="penultimate", batch_size=2)
    features = transformer.fit(dataset).transform(dataset)
    stacked = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    assert features.shape == (5, 16)
    np.testing.assert_allclose(features, transformer.transform(stacked), rtol=1e-5)


def test_transform_is_applied(tmp_path):
    _save(tmp_path / "a.png", np.full((4, 4, 3), 255, dtype=np.uint8))
    dataset = OODImageFolder(tmp_path, size=4, transform=lambda x: x * 2 - 1)
    image, _ = dataset[0]
    np.testing.assert_array_equal(image.numpy(), np.ones((3, 4, 4), np.float32))


def test_repr_and_pickle(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        _save(tmp_path / f"{i}.png", _random_image(rng, 8, 8))
    dataset = OODImageFolder(tmp_path, size=8)
    text = repr(dataset)
    assert str(tmp_path) in text and "n_images=3" in text
    # DataLoader workers started with "spawn" receive the dataset pickled.
    copy = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(copy[1][0].numpy(), dataset[1][0].numpy())


def test_missing_root_describes_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as exc:
        OODImageFolder(tmp_path / "LSUN_resize")
    message = str(exc.value)
    assert "LSUN_resize" in message and "images_classic" in message
    file = tmp_path / "file.jpg"
    file.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        OODImageFolder(file)


def test_empty_folder_describes_the_layout(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="No image file.*found under") as exc:
        OODImageFolder(tmp_path)
    assert ".jpeg" in str(exc.value) and "Imagenet_resize" in str(exc.value)


def test_image_list_errors(tmp_path):
    _save(tmp_path / "tin" / "a.jpg", np.zeros((4, 4), np.uint8))
    with pytest.raises(FileNotFoundError, match="Image list .*missing.txt not found"):
        OODImageFolder(tmp_path, image_list=tmp_path / "missing.txt")
    image_list = tmp_path / "list.txt"
    image_list.write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="names no image"):
        OODImageFolder(tmp_path, image_list=image_list)
    image_list.write_text("tin/a.jpg -1\ntin/b.jpg -1\ntin/c.jpg -1\n")
    with pytest.raises(FileNotFoundError, match="2 of the 3 files") as exc:
        OODImageFolder(tmp_path, image_list=image_list)
    assert str(tmp_path / "tin" / "b.jpg") in str(exc.value)
    assert "relative to root" in str(exc.value)


@pytest.mark.parametrize(
    "content", [b"not an image at all", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"]
)
def test_unreadable_image_names_the_file(tmp_path, content):
    _save(tmp_path / "good.jpg", np.zeros((4, 4), np.uint8))
    bad = tmp_path / "zbad.jpg"
    bad.write_bytes(content)
    dataset = OODImageFolder(tmp_path, size=4)
    dataset[0]
    with pytest.raises(ValueError, match="Cannot read the image file .*zbad.jpg"):
        dataset[1]


def test_truncated_jpeg_names_the_file(tmp_path):
    file = _save(tmp_path / "t.jpg", _random_image(np.random.default_rng(0), 64, 64))
    file.write_bytes(file.read_bytes()[:300])
    with pytest.raises(ValueError, match="t.jpg"):
        OODImageFolder(tmp_path)[0]


@pytest.mark.parametrize(
    "params, match",
    [
        ({"size": 0}, "size"),
        ({"resize": "crop"}, "resize"),
        ({"mode": "CMYK"}, "mode"),
        ({"extensions": ".jpg"}, "extensions"),
        ({"extensions": [".jpg", ""]}, "extensions should hold file suffixes"),
        ({"transform": 3}, "transform"),
    ],
)
def test_invalid_parameters(tmp_path, params, match):
    _save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=match):
        OODImageFolder(tmp_path, **params)


def test_datasets_import_leaves_torch_alone():
    # The Dataset class comes lazily: importing the package must not pull torch.
    code = "import sys, sklearn_ood.datasets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert _image_folders.OODImageFolder is OODImageFolder
