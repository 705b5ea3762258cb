"""Tests for ``sklearn_ood.plotting``: score histograms, ROC and PR displays."""

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import auc, precision_recall_curve, roc_curve  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sklearn_ood.detectors import KNN, Mahalanobis  # noqa: E402
from sklearn_ood.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr  # noqa: E402
from sklearn_ood.plotting import (  # noqa: E402
    OODPrecisionRecallDisplay,
    OODRocCurveDisplay,
    OODScoreDisplay,
)

SEEDS = range(4)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _make_scores(seed, decimals=1):
    """ID (classes 0..2) and OOD (-1) rows, shuffled, scores with many ties."""
    rng = np.random.default_rng(seed)
    n_id, n_ood = int(rng.integers(10, 60)), int(rng.integers(10, 60))
    y = np.r_[rng.integers(0, 3, n_id), -np.ones(n_ood, dtype=int)]
    s = np.round(np.r_[rng.normal(1.0, 1.0, n_id), rng.normal(0.0, 1.0, n_ood)], 1)
    perm = rng.permutation(y.shape[0])
    return y[perm], s[perm]


def _make_data(seed=0):
    """A 2-D ID training set and a test set of ID and shifted OOD rows."""
    rng = np.random.default_rng(seed)
    X_train = rng.normal(size=(150, 2))
    X = np.vstack([rng.normal(size=(40, 2)), rng.normal(2.5, 1.0, size=(30, 2))])
    y = np.r_[rng.integers(0, 2, 40), -np.ones(30, dtype=int)]
    return X_train, X, y


def _legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


# --------------------------------------------------------------------------
# Optional dependency
# --------------------------------------------------------------------------


def test_import_does_not_import_matplotlib():
    code = (
        "import sys, sklearn_ood.plotting; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "call",
    [
        lambda: OODScoreDisplay([1.0], [0.0]).plot(),
        lambda: OODScoreDisplay.from_predictions([0, -1], [1.0, 0.0]),
        lambda: OODRocCurveDisplay.from_predictions([0, -1], {"a": [1.0, 0.0]}),
        lambda: OODPrecisionRecallDisplay.from_predictions([0, -1], [1.0, 0.0]),
    ],
)
def test_missing_matplotlib_names_the_plot_extra(monkeypatch, call):
    # None in sys.modules makes "import matplotlib" raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "sklearn-ood\[plot\]"'):
        call()


# --------------------------------------------------------------------------
# OODScoreDisplay
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_score_display_counts_and_shared_bins(seed):
    y, s = _make_scores(seed)
    display = OODScoreDisplay.from_predictions(y, s, bins=7, density=False)
    assert isinstance(display, OODScoreDisplay)
    np.testing.assert_array_equal(display.id_scores, s[y >= 0])
    np.testing.assert_array_equal(display.ood_scores, s[y < 0])
    id_bars, ood_bars = display.hist_
    assert sum(id_bars.datavalues) == np.count_nonzero(y >= 0)
    assert sum(ood_bars.datavalues) == np.count_nonzero(y < 0)
    # one set of edges over both groups, spanning all scores
    assert display.bin_edges_.shape == (8,)
    assert display.bin_edges_[0] == s.min() and display.bin_edges_[-1] == s.max()
    for bars in (id_bars, ood_bars):
        lefts = [patch.get_x() for patch in bars.patches]
        np.testing.assert_allclose(lefts, display.bin_edges_[:-1])
    np.testing.assert_array_equal(
        id_bars.datavalues, np.histogram(s[y >= 0], display.bin_edges_)[0]
    )
    assert display.ax_.get_ylabel() == "count"


def test_score_display_density_integrates_to_one():
    y, s = _make_scores(0)
    display = OODScoreDisplay.from_predictions(y, s, bins=10)
    widths = np.diff(display.bin_edges_)
    for bars in display.hist_:
        assert np.sum(bars.datavalues * widths) == pytest.approx(1.0)
    assert display.ax_.get_ylabel() == "density"


def test_score_display_axes_legend_and_threshold():
    fig, ax = plt.subplots()
    display = OODScoreDisplay.from_predictions(
        [0, 1, -1, -1], [2.0, 1.0, 0.0, 0.5], threshold=0.75, name="Energy", ax=ax
    )
    assert display.ax_ is ax and display.figure_ is fig
    assert _legend_texts(ax) == ["in-distribution", "OOD", "threshold = 0.75"]
    assert display.threshold_line_.get_xdata()[0] == 0.75
    assert display.ax_.get_xlabel().startswith("Energy score")


def test_score_display_without_threshold_draws_no_line():
    display = OODScoreDisplay.from_predictions([0, -1], [1.0, 0.0])
    assert display.threshold_line_ is None
    assert _legend_texts(display.ax_) == ["in-distribution", "OOD"]


def test_score_display_from_estimator_uses_offset():
    X_train, X, y = _make_data()
    detector = Mahalanobis(contamination=0.1).fit(X_train)
    display = OODScoreDisplay.from_estimator(detector, X, y)
    assert display.threshold == detector.offset_
    assert display.threshold_line_.get_xdata()[0] == detector.offset_
    np.testing.assert_array_equal(display.id_scores, detector.score_samples(X)[y >= 0])
    assert display.ax_.get_xlabel().startswith("Mahalanobis score")
    # predict flags as OOD exactly the rows left of the drawn line
    x_line = display.threshold_line_.get_xdata()[0]
    np.testing.assert_array_equal(
        detector.predict(X) == -1, detector.score_samples(X) < x_line
    )


def test_score_display_from_estimator_pipeline_uses_last_step_offset():
    X_train, X, y = _make_data()
    pipe = make_pipeline(StandardScaler(), Mahalanobis()).fit(X_train)
    display = OODScoreDisplay.from_estimator(pipe, X, y)
    assert display.threshold_line_.get_xdata()[0] == pipe[-1].offset_
    assert display.name == "Mahalanobis"


def test_score_display_from_estimator_threshold_choices():
    X_train, X, y = _make_data()
    unthresholded = Mahalanobis(contamination=None).fit(X_train)
    assert OODScoreDisplay.from_estimator(unthresholded, X, y).threshold_line_ is None
    detector = Mahalanobis().fit(X_train)
    display = OODScoreDisplay.from_estimator(detector, X, y, threshold=None)
    assert display.threshold_line_ is None
    display = OODScoreDisplay.from_estimator(detector, X, y, threshold=-1.5)
    assert display.threshold_line_.get_xdata()[0] == -1.5


def test_score_display_style_kwargs_and_aliases():
    display = OODScoreDisplay.from_predictions(
        [0, -1],
        [1.0, 0.0],
        threshold=0.5,
        id_kwargs={"color": "green"},
        ood_kwargs={"fc": "red", "label": "noise"},
        threshold_kwargs={"c": "blue", "ls": ":"},
    )
    to_rgba = matplotlib.colors.to_rgba
    assert display.hist_[0].patches[0].get_facecolor() == to_rgba("green", 0.5)
    assert display.hist_[1].patches[0].get_facecolor() == to_rgba("red", 0.5)
    assert display.threshold_line_.get_color() == "blue"
    assert display.threshold_line_.get_linestyle() == ":"
    assert _legend_texts(display.ax_)[1] == "noise"


@pytest.mark.parametrize(
    "y, scores, match",
    [
        ([0, 1], [1.0, 2.0], "no OOD sample"),
        ([-1, -1], [1.0, 2.0], "no ID sample"),
        ([0, -1, -1], [1.0, 2.0], "different lengths"),
        ([0, -1], [1.0, np.nan], "NaN or infinite"),
        ([0, -1], [1.0, np.inf], "NaN or infinite"),
        ([0, -1], [[1.0], [2.0]], "must be 1-D"),
        ([0, -1], ["1.0", "2.0"], "real numbers"),
        ([True, False], [1.0, 2.0], "integer labels"),
    ],
)
def test_score_display_bad_input(y, scores, match):
    with pytest.raises(ValueError, match=match):
        OODScoreDisplay.from_predictions(y, scores)


def test_score_display_bad_options():
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        OODScoreDisplay.from_predictions([0, -1], [1.0, 0.0], threshold=np.nan)
    with pytest.raises(ValueError, match="density must be True or False"):
        OODScoreDisplay.from_predictions([0, -1], [1.0, 0.0], density="yes")
    with pytest.raises(ValueError, match="ood_scores is empty"):
        OODScoreDisplay([1.0, 2.0], []).plot()
    X_train, X, y = _make_data()
    detector = Mahalanobis().fit(X_train)
    with pytest.raises(ValueError, match="threshold must be one of 'auto'"):
        OODScoreDisplay.from_estimator(detector, X, y, threshold="offset")
    with pytest.raises(ValueError, match="score_samples method"):
        OODScoreDisplay.from_estimator(StandardScaler().fit(X), X, y)


# --------------------------------------------------------------------------
# OODRocCurveDisplay
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curves_match_sklearn_and_metrics(seed):
    y, s = _make_scores(seed)
    s2 = np.round(np.random.default_rng(seed + 100).normal(size=y.shape), 1)
    scores = {"first": s, "second": s2}
    display = OODRocCurveDisplay.from_predictions(y, scores)
    assert isinstance(display, OODRocCurveDisplay)
    assert display.name == ["first", "second"]
    assert len(display.lines_) == 2
    for k, (key, curve_scores) in enumerate(scores.items()):
        # ID is the positive class: TPR = ID accepted, FPR = OOD accepted
        fpr, tpr, _ = roc_curve(y >= 0, curve_scores)
        np.testing.assert_array_equal(display.fpr[k], fpr)
        np.testing.assert_array_equal(display.tpr[k], tpr)
        np.testing.assert_array_equal(display.lines_[k].get_xdata(), fpr)
        np.testing.assert_array_equal(display.lines_[k].get_ydata(), tpr)
        # the drawn area is the metric, to the bit
        assert auc(display.fpr[k], display.tpr[k]) == auroc(y, curve_scores)
        assert display.roc_auc[k] == auroc(y, curve_scores)
        assert display.operating_point[k][0] == fpr_at_tpr(y, curve_scores, 0.95)
        label = display.lines_[k].get_label()
        assert label == (
            f"{key} (AUROC = {auroc(y, curve_scores):.3f}, "
            f"FPR95 = {fpr_at_tpr(y, curve_scores):.3f})"
        )
    assert _legend_texts(display.ax_) == [line.get_label() for line in display.lines_]


@pytest.mark.parametrize("target_tpr", [0.5, 0.8, 0.95, 1.0])
def test_roc_operating_point_is_first_point_reaching_target(target_tpr):
    y, s = _make_scores(3)
    display = OODRocCurveDisplay.from_predictions(y, s, target_tpr=target_tpr)
    fpr, tpr, _ = roc_curve(y >= 0, s, drop_intermediate=False)
    point = display.operating_point[0]
    j = np.flatnonzero(tpr >= target_tpr)[0]
    assert point == (fpr[j], tpr[j])
    assert point[0] == fpr_at_tpr(y, s, target_tpr)
    marker = display.operating_points_[0]
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == point
    assert marker.get_color() == display.lines_[0].get_color()
    assert f"FPR{100 * target_tpr:g} = " in display.lines_[0].get_label()


def test_roc_operating_point_dropped_by_drop_intermediate():
    # 20 ID rows above every OOD row: the ROC climbs the y-axis in equal
    # steps, and drop_intermediate keeps only its ends, not (0, 0.95)
    y = np.r_[np.zeros(20, dtype=int), -np.ones(5, dtype=int)]
    s = np.r_[np.arange(20, 40), np.arange(5)].astype(float)
    display = OODRocCurveDisplay.from_predictions(y, s, name="perfect")
    assert not np.any(display.tpr[0] == 0.95)
    assert display.operating_point[0] == (0.0, 0.95)
    full = OODRocCurveDisplay.from_predictions(y, s, drop_intermediate=False)
    assert np.any(full.tpr[0] == 0.95)
    assert full.operating_point == display.operating_point


def test_roc_from_estimators_and_overlay():
    X_train, X, y = _make_data()
    detectors = {
        "Mahalanobis": Mahalanobis().fit(X_train),
        "KNN": KNN(n_neighbors=5).fit(X_train),
    }
    display = OODRocCurveDisplay.from_estimators(detectors, X, y)
    assert display.name == ["Mahalanobis", "KNN"]
    for k, detector in enumerate(detectors.values()):
        assert display.roc_auc[k] == auroc(y, detector.score_samples(X))
    # a second display on the same axes adds to it, as scikit-learn's do
    other = OODRocCurveDisplay.from_predictions(
        y, {"random": np.arange(y.shape[0], dtype=float)}, ax=display.ax_
    )
    assert other.ax_ is display.ax_
    texts = _legend_texts(display.ax_)
    assert len(texts) == 3
    assert texts[0].startswith("Mahalanobis (AUROC = ")
    assert texts[2].startswith("random (AUROC = ")


def test_roc_plot_options():
    y, s = _make_scores(1)
    display = OODRocCurveDisplay.from_predictions(
        y,
        {"a": s, "b": -s},
        curve_kwargs=[{"c": "red"}, {"color": "blue", "linestyle": ":"}],
        plot_operating_point=False,
        plot_chance_level=True,
    )
    assert [line.get_color() for line in display.lines_] == ["red", "blue"]
    assert display.lines_[1].get_linestyle() == ":"
    assert display.operating_points_ == []
    np.testing.assert_array_equal(display.chance_level_.get_xdata(), [0, 1])
    assert _legend_texts(display.ax_)[-1] == "chance level"
    assert display.ax_.get_xlabel().startswith("False positive rate")
    # redrawing on new axes with other names
    display.plot(name=["x", "y"])
    assert display.lines_[0].get_label().startswith("x (AUROC = ")
    assert display.chance_level_ is None
    assert len(display.operating_points_) == 2


def test_roc_display_built_by_hand():
    display = OODRocCurveDisplay(
        fpr=np.array([0.0, 0.5, 1.0]),
        tpr=np.array([0.0, 1.0, 1.0]),
        roc_auc=0.75,
        name="mine",
        operating_point=(0.5, 1.0),
    ).plot()
    assert len(display.lines_) == 1
    assert display.lines_[0].get_label() == "mine (AUROC = 0.750, FPR95 = 0.500)"
    unnamed = OODRocCurveDisplay(fpr=[0.0, 1.0], tpr=[0.0, 1.0]).plot()
    assert unnamed.ax_.get_legend() is None
    with pytest.raises(ValueError, match="same number of curves"):
        OODRocCurveDisplay(fpr=[[0.0, 1.0]], tpr=[[0.0, 1.0], [0.0, 1.0]]).plot()
    with pytest.raises(ValueError, match="name has 1 entries for 2 curve"):
        OODRocCurveDisplay(
            fpr=[[0.0, 1.0], [0.0, 1.0]], tpr=[[0.0, 1.0], [0.0, 1.0]], name="a"
        ).plot()


def test_roc_bad_input():
    y = [0, 0, -1, -1]
    good = [1.0, 0.9, 0.1, 0.2]
    with pytest.raises(ValueError, match="empty dict"):
        OODRocCurveDisplay.from_predictions(y, {})
    with pytest.raises(ValueError, match=r"scores\['b'\] .*different lengths"):
        OODRocCurveDisplay.from_predictions(y, {"a": good, "b": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"scores\['a'\] contain 1 NaN"):
        OODRocCurveDisplay.from_predictions(y, {"a": [1.0, np.nan, 0.1, 0.2]})
    with pytest.raises(ValueError, match="its keys name the curves"):
        OODRocCurveDisplay.from_predictions(y, {"a": good}, name="b")
    with pytest.raises(ValueError, match="no OOD sample"):
        OODRocCurveDisplay.from_predictions([0, 0, 1, 1], {"a": good})
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"target_tpr must be a number in"):
            OODRocCurveDisplay.from_predictions(y, {"a": good}, target_tpr=bad)
    with pytest.raises(ValueError, match="curve_kwargs has 1 dicts for 2"):
        OODRocCurveDisplay.from_predictions(
            y, {"a": good, "b": good}, curve_kwargs=[{}]
        )
    with pytest.raises(ValueError, match="non-empty dict name -> fitted detector"):
        OODRocCurveDisplay.from_estimators([Mahalanobis()], np.zeros((4, 2)), y)
    with pytest.raises(ValueError, match=r"detectors\['s'\] must be a fitted OOD"):
        OODRocCurveDisplay.from_estimators(
            {"s": StandardScaler().fit(np.zeros((4, 2)))}, np.zeros((4, 2)), y
        )


# --------------------------------------------------------------------------
# OODPrecisionRecallDisplay
# --------------------------------------------------------------------------


def _average_precision(precision, recall):
    # the step sum of average_precision_score over precision_recall_curve
    return -np.sum(np.diff(recall) * precision[:-1])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "positive, metric, name",
    [("id", aupr_in, "AUPR-In"), ("ood", aupr_out, "AUPR-Out")],
)
def test_pr_curves_match_sklearn_and_metrics(seed, positive, metric, name):
    y, s = _make_scores(seed)
    display = OODPrecisionRecallDisplay.from_predictions(
        y, {"det": s}, positive=positive
    )
    assert isinstance(display, OODPrecisionRecallDisplay)
    if positive == "id":
        precision, recall, _ = precision_recall_curve(y >= 0, s)
        assert display.prevalence == np.mean(y >= 0)
    else:
        precision, recall, _ = precision_recall_curve(y < 0, -s)
        assert display.prevalence == np.mean(y < 0)
    np.testing.assert_array_equal(display.precision[0], precision)
    np.testing.assert_array_equal(display.recall[0], recall)
    line = display.lines_[0]
    np.testing.assert_array_equal(line.get_xdata(), recall)
    np.testing.assert_array_equal(line.get_ydata(), precision)
    assert line.get_drawstyle() == "steps-post"
    assert display.aupr[0] == metric(y, s)
    assert _average_precision(precision, recall) == metric(y, s)
    assert line.get_label() == f"det ({name} = {metric(y, s):.3f})"
    assert _legend_texts(display.ax_) == [line.get_label()]


@pytest.mark.parametrize("positive, metric", [("id", aupr_in), ("ood", aupr_out)])
def test_pr_trapezoid_is_the_drawn_area(positive, metric):
    y, s = _make_scores(2)
    display = OODPrecisionRecallDisplay.from_predictions(
        y, s, positive=positive, aupr_method="trapezoid"
    )
    assert display.lines_[0].get_drawstyle() == "default"
    area = metric(y, s, method="trapezoid")
    assert display.aupr[0] == area
    assert auc(display.recall[0], display.precision[0]) == area


def test_pr_from_estimators_overlay_and_chance_level():
    X_train, X, y = _make_data()
    detectors = {
        "Mahalanobis": Mahalanobis().fit(X_train),
        "KNN": KNN(n_neighbors=5).fit(X_train),
    }
    display = OODPrecisionRecallDisplay.from_estimators(
        detectors, X, y, positive="ood", plot_chance_level=True
    )
    assert display.name == ["Mahalanobis", "KNN"]
    for k, detector in enumerate(detectors.values()):
        assert display.aupr[k] == aupr_out(y, detector.score_samples(X))
    assert display.chance_level_.get_ydata()[0] == np.mean(y < 0)
    assert display.ax_.get_xlabel() == "Recall (share of OOD flagged)"
    OODPrecisionRecallDisplay.from_estimators(
        {"KNN-1": KNN(n_neighbors=1).fit(X_train)}, X, y, ax=display.ax_
    )
    texts = _legend_texts(display.ax_)
    assert len(texts) == 4
    assert texts[-1].startswith("KNN-1 (AUPR-In = ")


def test_pr_bad_input():
    y = [0, 0, -1, -1]
    good = [1.0, 0.9, 0.1, 0.2]
    # the metrics' vocabulary, not aupr_in / aupr_out's suffixes
    with pytest.raises(ValueError, match="positive must be one of 'id', 'ood'"):
        OODPrecisionRecallDisplay.from_predictions(y, good, positive="in")
    with pytest.raises(ValueError, match="aupr_method must be one of"):
        OODPrecisionRecallDisplay.from_predictions(y, good, aupr_method="auc")
    with pytest.raises(ValueError, match="no ID sample"):
        OODPrecisionRecallDisplay.from_predictions([-1, -1, -1, -1], good)
    with pytest.raises(ValueError, match="needs the prevalence"):
        OODPrecisionRecallDisplay(precision=[1.0, 0.5], recall=[0.0, 1.0]).plot(
            plot_chance_level=True
        )
    with pytest.raises(ValueError, match="same number of curves"):
        OODPrecisionRecallDisplay(precision=[1.0, 0.5], recall=[0.0]).plot()
