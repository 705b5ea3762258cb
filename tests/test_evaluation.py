"""Tests of sklearn_ood.evaluation.evaluate: one extraction, one table."""

import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from sklearn_ood.base import BaseDetector
from sklearn_ood.detectors import (
    KNN,
    Energy,
    Mahalanobis,
    MaxSoftmax,
    MultiMahalanobis,
)
from sklearn_ood.evaluation import evaluate
from sklearn_ood.metrics import ood_report

COLUMNS = [
    "detector",
    "ood_set",
    "auroc",
    "aupr_in",
    "aupr_out",
    "fpr95",
    "detection_error",
    "fit_seconds",
    "score_seconds",
    "error",
]
METRICS = COLUMNS[2:7]


# --------------------------------------------------------------------- data
def _blobs(seed=0):
    """Three Gaussian classes in 4-D, an ID test set and two OOD sets."""
    rng = np.random.default_rng(seed)
    means = 4 * np.eye(3, 4)
    y_fit = rng.integers(0, 3, size=150)
    X_fit = means[y_fit] + rng.normal(size=(150, 4))
    test_sets = {
        "far": rng.normal(size=(40, 4)) + 9,
        "id": means[rng.integers(0, 3, size=50)] + rng.normal(size=(50, 4)),
        "near": rng.normal(size=(30, 4)) + 1.5,
    }
    return X_fit, y_fit, test_sets


class _Raises(BaseDetector):
    """Raises ``error`` in ``_fit`` (where="fit") or ``_score`` (where="score")."""

    def __init__(self, where="fit", error=RuntimeError, *, contamination=None):
        super().__init__(contamination=contamination)
        self.where = where
        self.error = error

    def _fit(self, X, y):
        if self.where == "fit":
            raise self.error("boom in fit")

    def _score(self, X):
        if self.where == "score":
            raise self.error("boom in score")
        return -np.linalg.norm(X, axis=1)


def _rows(table):
    return table.to_dict("records") if hasattr(table, "to_dict") else table


# --------------------------------------------------------------- numpy only
def test_metrics_equal_ood_report_of_detectors_fitted_alone():
    X_fit, y_fit, test_sets = _blobs()
    detectors = {"maha": Mahalanobis(), "knn": KNN(n_neighbors=5)}
    table = evaluate(detectors, X_fit, y_fit, test_sets)

    assert list(table.columns) == COLUMNS
    # OOD sets in the order of test_sets (the ID set may sit anywhere), then mean.
    assert table["ood_set"].tolist() == ["far", "near", "mean"] * 2
    assert table["detector"].tolist() == ["maha"] * 3 + ["knn"] * 3
    assert table["error"].isna().all()
    for name, detector in detectors.items():
        fitted = clone(detector).fit(X_fit, y_fit)
        id_scores = fitted.score_samples(test_sets["id"])
        reports = []
        for ood_set in ("far", "near"):
            ood_scores = fitted.score_samples(test_sets[ood_set])
            y = np.r_[np.zeros(len(id_scores)), -np.ones(len(ood_scores))]
            report = ood_report(y, np.r_[id_scores, ood_scores])
            reports.append(report)
            row = table[(table.detector == name) & (table.ood_set == ood_set)]
            assert row[METRICS].to_numpy().ravel().tolist() == pytest.approx(
                [report[m] for m in METRICS], abs=1e-12
            )
        mean = table[(table.detector == name) & (table.ood_set == "mean")]
        for m in METRICS:
            assert mean[m].item() == pytest.approx(np.mean([r[m] for r in reports]))
    # The near set overlaps the classes: not a perfect score, unlike far.
    near = table[table.ood_set == "near"]["auroc"]
    assert (near < 1).all() and (table[table.ood_set == "far"]["auroc"] == 1).all()
    assert (table["fit_seconds"] > 0).all() and (table["score_seconds"] > 0).all()
    # The mean row's score time is all the detector's scoring: ID set included.
    for name in detectors:
        rows = table[table.detector == name]
        assert rows["score_seconds"].iloc[-1] > rows["score_seconds"].iloc[:-1].sum()


def test_details_hold_scores_fitted_clones_and_timings():
    X_fit, y_fit, test_sets = _blobs()
    table, details = evaluate(
        [Mahalanobis(), KNN(n_neighbors=5)],  # a list: named by class
        X_fit,
        y_fit,
        test_sets,
        return_details=True,
    )
    assert set(details.scores) == set(details.detectors) == {"Mahalanobis", "KNN"}
    assert details.errors == {}
    assert list(details.scores["KNN"]) == ["id", "far", "near"]
    expected = Mahalanobis().fit(X_fit, y_fit).score_samples(test_sets["near"])
    assert_allclose(details.scores["Mahalanobis"]["near"], expected)
    check_is_fitted(details.detectors["KNN"])
    # No transformer: nothing extracted, every detector got the arrays as given.
    assert details.extraction_seconds == {"far": 0.0, "id": 0.0, "near": 0.0}
    assert details.transformer is None
    assert details.layers == {"Mahalanobis": "inputs", "KNN": "inputs"}
    assert table.attrs["extraction_seconds"] == details.extraction_seconds


def test_list_of_dicts_without_pandas(monkeypatch):
    X_fit, y_fit, test_sets = _blobs()
    detectors = {"maha": Mahalanobis(), "broken": _Raises("score")}
    expected = evaluate(detectors, X_fit, y_fit, test_sets).to_dict("records")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    table = evaluate(detectors, X_fit, y_fit, test_sets)
    assert isinstance(table, list) and len(table) == 6
    assert all(isinstance(row, dict) and list(row) == COLUMNS for row in table)
    for row, want in zip(table, expected):
        for key in ("detector", "ood_set", "error", *METRICS):
            assert row[key] == want[key] or (np.isnan(row[key]) and np.isnan(want[key]))
    assert table[0]["error"] is None and table[3]["error"].startswith("RuntimeError")


@pytest.mark.parametrize("where", ["fit", "score"])
def test_failing_detector_is_reported_and_others_run(where):
    X_fit, y_fit, test_sets = _blobs()
    detectors = {"before": Energy(), "broken": _Raises(where), "after": KNN(5)}
    table, details = evaluate(detectors, X_fit, y_fit, test_sets, return_details=True)
    broken = table[table.detector == "broken"]
    assert len(broken) == 3
    assert (broken["error"] == f"RuntimeError: boom in {where}").all()
    assert broken[METRICS].isna().all().all()
    assert broken["score_seconds"].isna().all()
    assert np.isnan(broken["fit_seconds"]).all() == (where == "fit")
    others = table[table.detector != "broken"]
    assert others["error"].isna().all() and others[METRICS].notna().all().all()
    assert details.errors == {"broken": f"RuntimeError: boom in {where}"}
    assert "broken" not in details.scores and "broken" not in details.detectors


class _WrongScores(BaseDetector):
    def __init__(self, kind="nan", *, contamination=None):
        super().__init__(contamination=contamination)
        self.kind = kind

    def _score(self, X):
        if self.kind == "nan":
            return np.full(len(X), np.nan)
        return np.zeros(len(X) + 1)  # one score too many


@pytest.mark.parametrize(
    "kind, message", [("nan", "ValueError: "), ("length", "ValueError: score")]
)
def test_bad_scores_are_a_detector_error(kind, message):
    X_fit, y_fit, test_sets = _blobs()
    table = evaluate({"bad": _WrongScores(kind)}, X_fit, y_fit, test_sets)
    assert table["error"].str.startswith(message).all()
    assert table[METRICS].isna().all().all()


def test_keyboard_interrupt_is_not_swallowed():
    X_fit, y_fit, test_sets = _blobs()
    with pytest.raises(KeyboardInterrupt):
        evaluate([_Raises("score", KeyboardInterrupt)], X_fit, y_fit, test_sets)


def test_verbose_prints_one_line_per_detector(capsys):
    X_fit, y_fit, test_sets = _blobs()
    evaluate([Energy(), _Raises()], X_fit, y_fit, test_sets, verbose=1)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 2
    assert "Energy" in lines[0] and "AUROC" in lines[0]
    assert "_Raises" in lines[1] and "failed: RuntimeError" in lines[1]
    evaluate([Energy()], X_fit, y_fit, test_sets)
    assert capsys.readouterr().err == ""


def test_user_objects_are_not_mutated():
    X_fit, y_fit, test_sets = _blobs()
    maha, knn, scaler = Mahalanobis(), KNN(n_neighbors=5), StandardScaler()
    params = [est.get_params() for est in (maha, knn, scaler)]
    _, details = evaluate(
        {"maha": maha, "knn": knn}, X_fit, y_fit, test_sets, scaler, return_details=True
    )
    assert [est.get_params() for est in (maha, knn, scaler)] == params
    for est in (maha, knn, scaler):
        with pytest.raises(NotFittedError):
            check_is_fitted(est)
    assert details.detectors["maha"] is not maha
    assert details.transformer is not scaler
    check_is_fitted(details.transformer)


def test_transformer_without_layer_feeds_its_output_to_every_detector():
    X_fit, y_fit, test_sets = _blobs()
    detectors = {"maha": Mahalanobis(), "knn": KNN(n_neighbors=5)}
    table, details = evaluate(
        detectors, X_fit, y_fit, test_sets, PCA(2), return_details=True
    )
    for name, detector in detectors.items():
        pipe = Pipeline([("pca", PCA(2)), ("ood", clone(detector))])
        pipe.fit(X_fit, y_fit)
        for set_name, X in test_sets.items():
            assert_allclose(details.scores[name][set_name], pipe.score_samples(X))
    assert details.layers == {"maha": "output", "knn": "output"}
    assert details.transformer.n_components_ == 2
    assert details.fit_extraction_seconds > 0
    assert all(s > 0 for s in details.extraction_seconds.values())


# ------------------------------------------------------------ argument errors
@pytest.mark.parametrize(
    "detectors, message",
    [
        ({}, "detectors is empty"),
        ([], "detectors is empty"),
        ({"e": Energy}, "not an instance: pass Energy"),
        ({"s": StandardScaler()}, "StandardScaler has no score_samples"),
        ([KNN(5), KNN(10)], r"\['KNN'\] occur more than once"),
        ({"": Energy()}, "non-empty strings"),
        ({"e": (Energy(), 3)}, "invalid layer 3"),
        ({"e": (Energy(), [])}, "invalid layer"),
        ({"e": (Energy(), ["logits", "logits"])}, "names a layer twice"),
        ({"e": (Energy(), ["inputs", "logits"])}, "cannot be combined"),
        ({"e": (Energy(), "logits")}, "transformer is None"),
    ],
)
def test_invalid_detectors(detectors, message):
    X_fit, y_fit, test_sets = _blobs()
    with pytest.raises(ValueError, match=message):
        evaluate(detectors, X_fit, y_fit, test_sets)


@pytest.mark.parametrize(
    "test_sets, id_set, message",
    [
        ({"test": np.zeros((3, 4)), "ood": np.ones((3, 4))}, "id", "no in-distrib"),
        ({"id": np.zeros((3, 4))}, "id", "at least one OOD set"),
        ({"id": np.zeros((3, 4)), "mean": np.ones((3, 4))}, "id", "named 'mean'"),
        ({"id": np.zeros((3, 4)), "ood": None}, "id", "'ood' is None"),
        ({"id": np.zeros((3, 4)), 3: np.ones((3, 4))}, "id", "non-empty strings"),
    ],
)
def test_invalid_test_sets(test_sets, id_set, message):
    X_fit, y_fit, _ = _blobs()
    with pytest.raises(ValueError, match=message):
        evaluate([Energy()], X_fit, y_fit, test_sets, id_set=id_set)


def test_invalid_other_arguments():
    X_fit, y_fit, test_sets = _blobs()
    with pytest.raises(ValueError, match="'detectors' parameter"):
        evaluate(Energy(), X_fit, y_fit, test_sets)
    with pytest.raises(ValueError, match="'transformer' parameter"):
        evaluate([Energy()], X_fit, y_fit, test_sets, transformer=Energy())
    with pytest.raises(ValueError, match="'test_sets' parameter"):
        evaluate([Energy()], X_fit, y_fit, list(test_sets.values()))
    with pytest.raises(ValueError, match="has no 'layer' parameter"):
        evaluate({"e": (Energy(), "logits")}, X_fit, y_fit, test_sets, PCA(2))


# -------------------------------------------------------------------- torch
@pytest.fixture(scope="module")
def digits_model():
    """An untrained DigitsCNN (the tests compare scores, not their quality)."""
    torch = pytest.importorskip("torch")
    from sklearn_ood.torch import DigitsCNN

    torch.set_num_threads(1)  # tiny model: one thread is fastest on shared cores
    torch.manual_seed(0)
    model = DigitsCNN(n_classes=3, width=4, dropout=0.5).eval()
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target
    X_fit, y_fit = X[y < 3][:90], y[y < 3][:90]
    test_sets = {
        "id": X[y < 3][90:120],
        "digits-5-9": X[y >= 5][:25],
        "inverted": 1 - X[y < 3][90:110],
    }
    return model, X_fit, y_fit, test_sets


def _count_forwards(model):
    counter = {"calls": 0}

    def hook(module, args):
        counter["calls"] += 1

    return counter, model.register_forward_pre_hook(hook)


def test_one_forward_pass_per_input_set_and_pipeline_scores(digits_model):
    from sklearn_ood.detectors import ViM
    from sklearn_ood.torch import TorchFeatureTransformer

    model, X_fit, y_fit, test_sets = digits_model
    transformer = TorchFeatureTransformer(model, batch_size=256, device="cpu")
    detectors = {
        "energy": Energy(),  # "logits"
        "msp": MaxSoftmax(),  # "logits" again
        "maha": Mahalanobis(reg_covar=1e-3),  # "penultimate"
        "vim": ViM(head=model.fc, n_components=4),  # "penultimate" with a head
        "knn-block2": (KNN(n_neighbors=3), "block2"),
        "multi": (MultiMahalanobis(reg_covar=1e-3), ["block3", "block2"]),
    }
    counter, handle = _count_forwards(model)
    try:
        table, details = evaluate(
            detectors, X_fit, y_fit, test_sets, transformer, return_details=True
        )
        # fit's one probe batch, then X_fit and each test set once (one batch).
        assert counter["calls"] == 1 + 1 + len(test_sets)
        counter["calls"] = 0
        evaluate({"energy": Energy()}, X_fit, y_fit, test_sets, transformer)
        assert counter["calls"] == 1 + 1 + len(test_sets)  # however many detectors
    finally:
        handle.remove()
    assert table["error"].isna().all(), table["error"].dropna().tolist()
    assert details.transformer.layer == ["logits", "penultimate", "block2", "block3"]
    assert transformer.layer == "logits"  # the user's transformer is untouched
    assert details.layers["multi"] == ["block3", "block2"]
    # The multi-layer detector's clone got the block widths, in its order.
    assert details.detectors["multi"].groups == [16, 8]
    assert detectors["multi"][0].groups is None
    assert set(details.extraction_seconds) == set(test_sets)

    layers = {
        "energy": "logits",
        "msp": "logits",
        "maha": "penultimate",
        "vim": "penultimate",
        "knn-block2": "block2",
        "multi": ["block3", "block2"],
    }
    for name, value in detectors.items():
        detector = clone(value[0] if isinstance(value, tuple) else value)
        if name == "multi":
            detector.set_params(groups=[16, 8])
        pipe = Pipeline(
            [
                ("feat", TorchFeatureTransformer(model, layers[name], device="cpu")),
                ("ood", detector),
            ]
        ).fit(X_fit, y_fit)
        for set_name, X in test_sets.items():
            assert_allclose(
                details.scores[name][set_name],
                pipe.score_samples(X),
                rtol=1e-6,
                atol=1e-9,
                err_msg=f"{name} on {set_name}",
            )


def test_multi_layer_detector_defaults_to_the_transformers_layer(digits_model):
    from sklearn_ood.torch import TorchFeatureTransformer

    model, X_fit, y_fit, test_sets = digits_model
    transformer = TorchFeatureTransformer(
        model, layer=["block2", "penultimate"], device="cpu"
    )
    groups = [4, 4, 16]  # the user's own groups are kept
    detectors = {
        "multi": MultiMahalanobis(reg_covar=1e-3),
        "multi-own": MultiMahalanobis(groups=groups, reg_covar=1e-3),
        "energy": Energy(),
    }
    table, details = evaluate(
        detectors, X_fit, y_fit, test_sets, transformer, return_details=True
    )
    assert table["error"].isna().all()
    assert details.layers["multi"] == ["block2", "penultimate"]
    assert details.detectors["multi"].groups == [8, 16]
    assert details.detectors["multi-own"].groups == groups
    assert details.transformer.layer == ["block2", "penultimate", "logits"]


def test_raw_input_detectors_get_the_inputs(digits_model):
    torch = pytest.importorskip("torch")
    from sklearn_ood.torch import ODIN, MCDropout, TorchFeatureTransformer

    model, X_fit, y_fit, test_sets = digits_model
    mcd = MCDropout(model, n_samples=3, random_state=0, device="cpu")
    odin = ODIN(model, temperature=10.0, epsilon=0.001, device="cpu")
    transformer = TorchFeatureTransformer(model, device="cpu")
    _, details = evaluate(
        {"mcd": mcd, "odin": odin},
        X_fit,
        y_fit,
        test_sets,
        transformer,
        return_details=True,
    )
    # Nothing needed features: the transformer was not even fitted.
    assert details.transformer is None
    assert details.layers == {"mcd": "inputs", "odin": "inputs"}
    for name, detector in (("mcd", mcd), ("odin", odin)):
        fitted = clone(detector).fit(X_fit, y_fit)
        for set_name, X in test_sets.items():
            assert_allclose(details.scores[name][set_name], fitted.score_samples(X))

    # "inputs" given explicitly, beside a logit detector, and torch inputs: a
    # tensor and a Dataset are scored like the arrays.
    tensors = {name: torch.from_numpy(X) for name, X in test_sets.items()}
    tensors["inverted"] = torch.utils.data.TensorDataset(tensors["inverted"])
    table, mixed = evaluate(
        {"odin": (odin, "inputs"), "energy": Energy()},
        X_fit,
        y_fit,
        tensors,
        transformer,
        return_details=True,
    )
    assert table["error"].isna().all(), table["error"].dropna().tolist()
    assert mixed.layers == {"odin": "inputs", "energy": ["logits"]}
    for set_name in test_sets:
        assert_array_equal(
            mixed.scores["odin"][set_name], details.scores["odin"][set_name]
        )
    energy = Pipeline([("t", clone(transformer)), ("e", Energy())]).fit(X_fit)
    assert_allclose(
        mixed.scores["energy"]["inverted"], energy.score_samples(test_sets["inverted"])
    )


def test_unknown_layer_is_the_transformers_error(digits_model):
    from sklearn_ood.torch import TorchFeatureTransformer

    model, X_fit, y_fit, test_sets = digits_model
    transformer = TorchFeatureTransformer(model, device="cpu")
    with pytest.raises(ValueError, match="Unknown layer 'blok2'"):
        evaluate({"knn": (KNN(3), "blok2")}, X_fit, y_fit, test_sets, transformer)
