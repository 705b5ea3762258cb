"""Reference architectures (tiny widths) and the safe weight loader."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

torch = pytest.importorskip("torch")

import numpy as np
from sklearn.pipeline import make_pipeline
from torch import nn

from sklearn_ood.detectors import fDBD
from sklearn_ood.torch import (
    DenseNetBC,
    DigitsCNN,
    FashionCNN,
    MCDropout,
    TorchFeatureTransformer,
    WideResNet,
    load_weights,
)


def _tiny_models():
    return [
        ("wrn", lambda: WideResNet(depth=10, widen_factor=1, n_classes=4), 32, 64),
        ("densenet", lambda: DenseNetBC(depth=10, growth_rate=4, n_classes=4), 32, 9),
        ("fashion", lambda: FashionCNN(n_classes=4, width=4), 28, 16),
        ("digits", lambda: DigitsCNN(n_classes=4, width=4), 8, 16),
    ]


@pytest.mark.parametrize(
    "build, size, n_features",
    [m[1:] for m in _tiny_models()],
    ids=[m[0] for m in _tiny_models()],
)
def test_penultimate_and_head(build, size, n_features):
    torch.manual_seed(0)
    model = build().eval()
    channels = model.conv1.in_channels if hasattr(model, "conv1") else 1
    X = torch.rand(2, channels, size, size)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[-1] is model.fc  # the last nn.Linear is the head
    assert model.fc.in_features == n_features
    with torch.no_grad():
        logits = model(X)
    assert logits.shape == (2, 4)

    t = TorchFeatureTransformer(model, layer="penultimate", device="cpu").fit(X)
    feats = t.transform(X)
    assert feats.shape == (2, n_features)
    with torch.no_grad():
        recomputed = model.fc(torch.as_tensor(feats))
    torch.testing.assert_close(recomputed, logits, rtol=1e-5, atol=1e-5)


def test_head_aware_detector_with_model_fc():
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1, n_classes=3).eval()
    X = torch.rand(12, 3, 32, 32)
    pipe = make_pipeline(
        TorchFeatureTransformer(model, layer="penultimate", device="cpu"),
        fDBD(head=model.fc),
    ).fit(X)
    scores = pipe.score_samples(X)
    assert scores.shape == (12,) and np.isfinite(scores).all()


def test_wide_resnet_structure():
    model = WideResNet(depth=16, widen_factor=2, dropout=0.3)
    keys = model.state_dict().keys()
    # Names of the published energy / OE checkpoints.
    for key in [
        "conv1.weight",
        "block1.layer.0.bn1.weight",
        "block1.layer.0.convShortcut.weight",  # 16 -> 32 channels
        "block2.layer.1.conv2.weight",
        "block3.layer.0.convShortcut.weight",
        "bn1.running_var",
        "fc.weight",
    ]:
        assert key in keys
    assert len(model.block1.layer) == 2  # (16 - 4) / 6
    assert model.fc.in_features == 128
    assert torch.all(model.fc.bias == 0)
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.3] * 6
    # The reference WRN-40-2 has about 2.2 M parameters.
    n = sum(p.numel() for p in WideResNet().parameters())
    assert 2.2e6 < n < 2.3e6


def test_wide_resnet_strided_input():
    # 32x32 input: 8x8 before the global average pool, as the reference's
    # avg_pool2d(8).
    model = WideResNet(depth=10, widen_factor=1).eval()
    seen = {}

    def hook(module, args, output):
        seen["shape"] = output.shape

    model.bn1.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    assert seen["shape"] == (1, 64, 8, 8)


def test_densenet_structure():
    model = DenseNetBC()
    # Widths of DenseNet-BC-100: 24 -> 216 -> 108 -> 300 -> 150 -> 342.
    assert model.conv1.out_channels == 24
    assert model.trans1.conv1.in_channels == 216
    assert model.trans1.conv1.out_channels == 108
    assert model.trans2.conv1.in_channels == 300
    assert model.trans2.conv1.out_channels == 150
    assert model.fc.in_features == 342
    assert len(model.block1.layer) == 16
    n = sum(p.numel() for p in model.parameters())
    assert 0.75e6 < n < 0.8e6  # "0.8 M" in the DenseNet paper

    um = DenseNetBC(depth=10, growth_rate=4, bn_affine=False, dropout=0.3)
    bns = [m for m in um.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not bn.affine for bn in bns)
    assert not any(k.endswith("bn1.weight") for k in um.state_dict())
    assert "block1.layer.0.bn1.running_mean" in um.state_dict()
    drops = [m for m in um.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(m.p == 0.3 for m in drops)


def test_dropout_modules_serve_mc_dropout():
    torch.manual_seed(0)
    model = DenseNetBC(depth=10, growth_rate=4, dropout=0.3, n_classes=3).eval()
    X = torch.rand(6, 3, 16, 16)
    mcd = MCDropout(model, n_samples=3, random_state=0, device="cpu").fit(X)
    assert np.isfinite(mcd.score_samples(X)).all()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: WideResNet(depth=12), "multiple of 6"),
        (lambda: WideResNet(depth=4), "depth must be an integer >= 10"),
        (lambda: WideResNet(widen_factor=0), "widen_factor"),
        (lambda: DenseNetBC(depth=99), "multiple of 6"),
        (lambda: DenseNetBC(reduction=0), "reduction"),
        (lambda: DenseNetBC(growth_rate=1.5), "growth_rate"),
    ],
)
def test_invalid_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# ------------------------------------------------------------- load_weights
def _outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_load_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    source = DenseNetBC(depth=10, growth_rate=4, n_classes=3)
    source.train()(torch.rand(4, 3, 16, 16))  # non-trivial running statistics
    path = tmp_path / "densenet.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    target = DenseNetBC(depth=10, growth_rate=4, n_classes=3)
    assert load_weights(target, path) is target
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(_outputs(target, x), _outputs(source, x))
    # str paths too
    load_weights(DenseNetBC(depth=10, growth_rate=4, n_classes=3), str(path))


def test_load_weights_checkpoint_dict_and_data_parallel_prefix(tmp_path):
    source = DigitsCNN(n_classes=3, width=4)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 7, "state_dict": state, "best_acc1": 91.5}, path)
    target = load_weights(DigitsCNN(n_classes=3, width=4), path)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(_outputs(target, x), _outputs(source, x))


def test_load_weights_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_weights(DigitsCNN(), tmp_path / "nope.pt")


def test_load_weights_mismatch(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(DigitsCNN(n_classes=3, width=8).state_dict(), path)
    model = DigitsCNN(n_classes=3, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="shapes differ: block1.0.weight"):
        load_weights(model, path)
    for k, v in model.state_dict().items():  # nothing loaded
        assert torch.equal(v, before[k])

    torch.save(nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(ValueError, match="missing from the file") as info:
        load_weights(model, path)
    assert "in the file but not in the model: weight, bias" in str(info.value)


def test_load_weights_strict_false(tmp_path):
    source = WideResNet(depth=10, widen_factor=1, n_classes=3)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "backbone.pt"
    torch.save(state, path)
    model = WideResNet(depth=10, widen_factor=1, n_classes=3)
    with pytest.raises(ValueError, match="missing from the file: fc.weight, fc.bias"):
        load_weights(model, path)
    fc = model.fc.weight.clone()
    load_weights(model, path, strict=False)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.fc.weight, fc)


def test_load_weights_non_affine_hint(tmp_path):
    path = tmp_path / "um.pt"
    torch.save(DenseNetBC(depth=10, growth_rate=4, bn_affine=False).state_dict(), path)
    with pytest.raises(ValueError, match="bn_affine=False"):
        load_weights(DenseNetBC(depth=10, growth_rate=4), path)
    load_weights(DenseNetBC(depth=10, growth_rate=4, bn_affine=False), path)


def test_load_weights_refuses_pickled_objects(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(DigitsCNN(width=4), path)  # a pickled module, not a state dict
    with pytest.raises(ValueError, match="weights_only=True"):
        load_weights(DigitsCNN(width=4), path)
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="Could not read"):
        load_weights(DigitsCNN(width=4), path)
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_weights(DigitsCNN(width=4), path)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        load_weights("model", path)


def test_load_weights_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    source = FashionCNN(n_classes=3, width=4)
    path = tmp_path / "fashion.safetensors"
    st.save_file(source.state_dict(), str(path))
    target = load_weights(FashionCNN(n_classes=3, width=4), path)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(_outputs(target, x), _outputs(source, x))
