"""The ``sklearn-ood`` command end to end: files, cache, seeds, errors.

Runs are small (one epoch, a few detectors, digits) so the file stays fast;
the full default run is measured by hand (see the CLI's help).
"""

import csv
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("skorch")

import torch  # noqa: E402

from sklearn_ood._benchmark import _training  # noqa: E402
from sklearn_ood._benchmark._report import csv_columns  # noqa: E402
from sklearn_ood.cli import main  # noqa: E402
from sklearn_ood.torch import DigitsCNN  # noqa: E402

DIGITS_SETS = [
    "held-out-digits",
    "uniform-noise",
    "gaussian-noise",
    "inverted",
    "flipped",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One quick benchmark (trains, fills the cache); shared by several tests."""
    root = tmp_path_factory.mktemp("bench")
    output, cache = root / "out", root / "cache"
    argv = [
        "benchmark",
        "--epochs", "1",
        "--detectors", "energy", "Mahalanobis", "KNN",
        "--output", str(output),
        "--cache-dir", str(cache),
    ]  # fmt: skip
    # capsys is function-scoped: capture by hand.
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return {
        "status": status,
        "out": out.getvalue(),
        "err": err.getvalue(),
        "output": output,
        "cache": cache,
        "argv": argv,
    }


def test_benchmark_writes_every_file(first_run):
    assert first_run["status"] == 0, first_run["err"]
    output = first_run["output"]
    columns, rows = _read_csv(output / "results.csv")
    assert columns == csv_columns(1)
    assert "auroc_std" not in columns
    detectors = ["Energy", "KNN", "Mahalanobis"]
    assert sorted({row["detector"] for row in rows}) == detectors
    for name in detectors:
        sets = [row["ood_set"] for row in rows if row["detector"] == name]
        assert sets == [*DIGITS_SETS, "mean"]
    for row in rows:
        assert 0.0 <= float(row["auroc"]) <= 1.0
        assert row["error"] == ""
    assert {row["family"] for row in rows} == {"logits", "gaussian", "neighbors"}

    payload = json.loads((output / "results.json").read_text())
    for key in ("config", "versions", "data", "models", "runs", "aggregate", "skipped"):
        assert key in payload
    assert payload["config"]["seeds"] == [0]
    assert payload["config"]["detectors"] == detectors
    assert 0.0 <= payload["models"][0]["id_test_accuracy"] <= 1.0
    assert payload["models"][0]["source"] == "trained"
    assert len(payload["runs"][0]["rows"]) == len(rows)
    assert list(payload["data"]["ood"]) == DIGITS_SETS
    for name in ("roc.png", "scores.png"):
        content = (output / name).read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 1000


def test_benchmark_prints_the_table(first_run):
    out = first_run["out"]
    assert "mean AUROC" in out and "mean FPR95" in out
    lines = [line for line in out.splitlines() if line.split()[:1]]
    table = {line.split()[0]: line for line in lines}
    for name in ("Energy", "KNN", "Mahalanobis"):
        assert name in table
    # Sorted by mean AUROC: the rows come in the CSV's order.
    _, rows = _read_csv(first_run["output"] / "results.csv")
    means = [float(r["auroc"]) for r in rows if r["ood_set"] == "mean"]
    assert means == sorted(means, reverse=True)
    assert "ID test accuracy" in out
    assert "training DigitsCNN" in first_run["err"]
    assert "cached the model in" in first_run["err"]


def test_second_run_uses_the_cache(first_run, tmp_path, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been used")

    monkeypatch.setattr(_training, "fit_model", no_training)
    argv = list(first_run["argv"])
    argv[argv.index("--output") + 1] = str(tmp_path / "again")
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    assert "using cached model" in err
    cached = os.listdir(first_run["cache"] / "models")
    assert len(cached) == 1 and cached[0].endswith(".pt")
    assert not any(name.endswith(".tmp") for name in cached)
    # Same weights, same split: the same results.
    _, rows = _read_csv(first_run["output"] / "results.csv")
    _, again = _read_csv(tmp_path / "again" / "results.csv")
    assert [r["auroc"] for r in rows] == [r["auroc"] for r in again]


def test_quiet_prints_only_the_table(first_run, tmp_path, capsys):
    argv = [*first_run["argv"], "--quiet"]
    argv[argv.index("--output") + 1] = str(tmp_path / "quiet")
    status, out, err = _run(argv, capsys)
    assert status == 0
    assert err == ""
    assert "mean AUROC" in out


def test_several_seeds_give_std_columns(tmp_path, capsys):
    argv = [
        "benchmark", "--quiet", "--epochs", "1", "--seeds", "0", "1",
        "--detectors", "gaussian",
        "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    columns, rows = _read_csv(tmp_path / "out" / "results.csv")
    assert columns == csv_columns(2)
    assert {"auroc_std", "fpr95_std", "detection_error_std"} <= set(columns)
    # The family selects its four detectors, no other.
    assert {r["detector"] for r in rows} == {
        "GMM",
        "Mahalanobis",
        "MultiMahalanobis",
        "RMD",
    }
    stds = np.array([float(r["auroc_std"]) for r in rows])
    assert (stds >= 0).all() and (stds > 0).any()  # two splits, two models
    assert " +- " in out
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [run["seed"] for run in payload["runs"]] == [0, 1]
    assert len(payload["models"]) == 2
    assert len(os.listdir(tmp_path / "cache" / "models")) == 2


def test_module_help_in_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_ood", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "benchmark" in result.stdout and "list" in result.stdout


def _console_script():
    path = os.path.join(os.path.dirname(sys.executable), "sklearn-ood")
    if not os.path.exists(path):
        pytest.skip("the console script is not installed (pip install -e .)")
    return path


def test_list_in_a_subprocess():
    from sklearn_ood import all_detectors

    result = subprocess.run(
        [_console_script(), "list"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    listed = {line.split()[0]: line.split()[1:3] for line in lines[1:] if line}
    for name, cls in all_detectors():
        assert listed[name] == [cls._family, cls._input_kind]


def test_bad_argument_in_a_subprocess():
    result = subprocess.run(
        [_console_script(), "benchmark", "--preset", "imagenet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("sklearn-ood: error: argument --preset")
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------ bad arguments
@pytest.fixture
def files(tmp_path):
    """A malformed .npz, a .npz without y, a 3-logit state dict."""
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, X=np.zeros((4, 1, 8, 8), np.float32))
    state = tmp_path / "three.pt"
    torch.save(DigitsCNN(n_classes=3).state_dict(), state)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    return {"bad": bad, "no_y": no_y, "state": state, "text": text, "dir": tmp_path}


BAD_ARGUMENTS = {
    "unknown detector": (["--detectors", "Energy,Nope"], "unknown detector"),
    "unknown option": (["--colour", "red"], "unrecognized arguments"),
    "repeated classes": (["--id-classes", "0", "0", "1"], "repeated"),
    "class out of range": (["--id-classes", "0", "12"], "0..9"),
    "missing folder": (
        ["--id-data", "{dir}/nowhere", "--ood-data", "a={bad}"],
        "no such file or folder",
    ),  # fmt: skip
    "missing model": (["--model", "{dir}/missing.pt"], "no such file"),
    "ood without =": (["--ood-data", "{bad}"], "NAME=PATH"),
    "reserved ood name": (["--ood-data", "mean={no_y}"], "reserved"),
    "not a npz": (["--ood-data", "x={text}"], "not a .npz"),
    "malformed npz": (["--ood-data", "x={bad}"], "not a readable .npz"),
    "npz without y": (
        ["--id-data", "{no_y}", "--ood-data", "x={no_y}"],
        "has no array y",
    ),  # fmt: skip
    "id-data without ood": (["--id-data", "{no_y}"], "--ood-data"),
    "state dict without arch": (["--model", "{state}"], "--arch"),
    "state dict of another shape": (
        ["--model", "{state}", "--arch", "digits-cnn"],
        "--model",
    ),
    "model output does not fit": (
        ["--model", "{state}", "--arch", "digits-cnn", "--n-classes", "3"],
        "3 outputs",
    ),
    "bad threads": (["--threads", "0"], "--threads"),
    "bad device": (["--device", "tpu9"], "--device"),
    "n-train on digits": (["--n-train", "100"], "fashion-mnist"),
    "negative seed": (["--seeds", "0", "-1"], "--seeds"),
    "output is a file": (["--output", "{text}"], "is a file"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_are_one_line(case, files, capsys):
    args, expected = BAD_ARGUMENTS[case]
    args = [a.format(**files) for a in args]
    argv = [
        "benchmark", "--quiet", "--epochs", "1", "--detectors", "Energy",
        "--output", str(files["dir"] / "out"),
        "--cache-dir", str(files["dir"] / "cache"), *args,
    ]  # fmt: skip
    status, out, err = _run(argv, capsys)
    assert status == 2
    assert err.count("\n") == 1, err
    assert err.startswith("sklearn-ood: error: ")
    assert expected in err
    assert "Traceback" not in err
    assert not (files["dir"] / "out").exists()


def test_no_command_is_a_usage_error(capsys):
    status, out, err = _run([], capsys)
    assert status == 2
    assert err.startswith("sklearn-ood: error: choose a command")


def test_without_torch_one_line(monkeypatch, capsys, tmp_path):
    # A None entry makes ``import torch`` raise ImportError.
    monkeypatch.setitem(sys.modules, "torch", None)
    status, out, err = _run(["benchmark", "--output", str(tmp_path)], capsys)
    assert status == 1
    assert err.count("\n") == 1
    assert 'pip install "sklearn-ood[torch]"' in err


def test_missing_fashion_mnist_is_one_line(tmp_path, capsys):
    empty = tmp_path / "fashion"
    empty.mkdir()
    status, out, err = _run(
        [
            "benchmark", "--quiet", "--preset", "fashion-mnist",
            "--fashion-path", str(empty), "--output", str(tmp_path / "out"),
        ],
        capsys,
    )  # fmt: skip
    assert status == 1
    assert err.count("\n") == 1
    assert "dataset-fashion-mnist" in err


# -------------------------------------------------------- the user's model
def test_user_torchscript_model_and_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = DigitsCNN(n_classes=3, width=4).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript deprecation
        torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    X = rng.random((60, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "id.npz", X=X, y=np.repeat([3, 5, 9], 20))
    ood = (rng.random((25, 1, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "ood.npz", X=ood)
    argv = [
        "benchmark", "--quiet",
        "--model", str(tmp_path / "model.pt"),
        "--id-data", str(tmp_path / "id.npz"),
        "--ood-data", f"noise={tmp_path / 'ood.npz'}",
        "--detectors", "Energy", "MaxSoftmax", "Mahalanobis", "ODIN",
        "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    _, rows = _read_csv(tmp_path / "out" / "results.csv")
    assert {r["detector"] for r in rows} == {"Energy", "MaxSoftmax", "ODIN"}
    assert {r["ood_set"] for r in rows} == {"noise", "mean"}
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["skipped"][0]["detector"] == "Mahalanobis"
    assert "TorchScript" in payload["skipped"][0]["reason"]
    assert payload["data"]["id_test"] == 18  # 30 % of 60, stratified
    assert payload["data"]["classes"] == ["3", "5", "9"]
    assert payload["models"][0]["source"] == "torchscript"
    assert "not applicable" in out and "Mahalanobis" in out
    assert not (tmp_path / "cache").exists()  # nothing trained


def test_user_state_dict_with_arch_on_the_preset(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(DigitsCNN(n_classes=5).state_dict(), tmp_path / "weights.pt")
    argv = [
        "benchmark", "--quiet", "--model", str(tmp_path / "weights.pt"),
        "--arch", "digits-cnn", "--detectors", "ViM", "Gram",
        "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["skipped"] == []
    assert payload["models"][0]["source"] == "state_dict"
    means = {r["detector"]: r for r in payload["aggregate"] if r["ood_set"] == "mean"}
    assert set(means) == {"ViM", "Gram"}
    assert all(r["error"] is None for r in means.values())


def test_user_image_folders(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for cls, level in (("dark", 40), ("light", 200)):
        (tmp_path / "id" / cls).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (12, 12, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(
                tmp_path / "id" / cls / f"{i}.png"
            )
    (tmp_path / "ood" / "deep").mkdir(parents=True)
    for i in range(6):
        pixels = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "ood" / "deep" / f"{i}.png")
    argv = [
        "benchmark", "--quiet", "--epochs", "1", "--image-size", "8",
        "--id-data", str(tmp_path / "id"),
        "--ood-data", f"noise={tmp_path / 'ood'}",
        "--detectors", "Energy",
        "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["data"]["sample_shape"] == [3, 8, 8]
    assert payload["data"]["classes"] == ["dark", "light"]
    assert payload["data"]["ood"]["noise"]["n_samples"] == 6
    assert payload["models"][0]["source"] == "trained"
    assert payload["models"][0]["arch"] == "digits-cnn"  # 8 x 8 images


def test_without_pandas_and_matplotlib(first_run, tmp_path, capsys, monkeypatch):
    # evaluate() then returns a list of dicts, and the figures are skipped.
    for module in ("pandas", "matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, module, None)
    argv = list(first_run["argv"])
    argv[argv.index("--output") + 1] = str(tmp_path / "plain")
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    assert "matplotlib is not installed: no figures" in err
    assert sorted(os.listdir(tmp_path / "plain")) == ["results.csv", "results.json"]
    _, rows = _read_csv(tmp_path / "plain" / "results.csv")
    _, expected = _read_csv(first_run["output"] / "results.csv")
    assert [r["auroc"] for r in rows] == [r["auroc"] for r in expected]
    payload = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert payload["figures"] == {"roc.png": None, "scores.png": None}
