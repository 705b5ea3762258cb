"""Tests for ``ood_scorer``: scikit-learn scorers over OOD metrics."""

import pickle
import re

import numpy as np
import pytest
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.metrics import check_scoring
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    cross_validate,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from sklearn_ood.metrics import (
    aupr_in,
    auroc,
    detection_error,
    fpr_at_tpr,
    get_ood_scorer_names,
    ood_scorer,
)


class _MeanDistanceDetector(OutlierMixin, BaseEstimator):
    """Test-only detector: score = -||x - shrink * mean(ID rows)||."""

    def __init__(self, shrink=1.0):
        self.shrink = shrink

    def fit(self, X, y=None):
        X = validate_data(self, X)
        if y is not None:
            X = X[np.asarray(y) >= 0]
        self.center_ = self.shrink * X.mean(axis=0)
        self.offset_ = float(np.quantile(self.score_samples(X), 0.05))
        return self

    def score_samples(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return -np.linalg.norm(X - self.center_, axis=1)

    def decision_function(self, X):
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        return np.where(self.decision_function(X) >= 0, 1, -1)


class _DecisionOnly(BaseEstimator):
    """Exposes only ``decision_function`` (the scorer's fallback)."""

    def fit(self, X, y=None):
        self.detector_ = _MeanDistanceDetector().fit(X, y)
        return self

    def decision_function(self, X):
        return self.detector_.decision_function(X)


class _NoScores(BaseEstimator):
    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return np.ones(len(X), dtype=int)


def _mixed_data(seed=0):
    """Two ID classes around (2, 2, 0, 0), OOD rows around 0, OOD appended last."""
    rng = np.random.default_rng(seed)
    center = np.array([2.0, 2.0, 0.0, 0.0])
    X_id = center + rng.normal(size=(80, 4))
    X_ood = rng.normal(size=(40, 4))
    X = np.vstack([X_id, X_ood])
    y = np.r_[np.repeat([0, 1], 40), -np.ones(40, dtype=int)]
    return X, y


CV = StratifiedKFold(3, shuffle=True, random_state=0)


def test_scorer_names():
    assert get_ood_scorer_names() == [
        "aupr_in",
        "aupr_out",
        "auroc",
        "neg_detection_error",
        "neg_fpr95",
        "neg_fpr_at_tpr",
    ]


@pytest.mark.parametrize(
    "old, new",
    [
        ("fpr95", "neg_fpr95"),
        ("fpr_at_tpr", "neg_fpr_at_tpr"),
        ("detection_error", "neg_detection_error"),
    ],
)
def test_names_before_neg_prefix_raise_and_name_the_new_scorer(old, new):
    # unreleased package: no deprecation period, but a message that helps
    with pytest.raises(ValueError, match=f"is now named '{new}'"):
        ood_scorer(old)
    with pytest.raises(ValueError, match=f"is now named '{new}'"):
        ood_scorer(old, greater_is_better=False)


def test_scorer_values_and_sign():
    X, y = _mixed_data()
    det = _MeanDistanceDetector().fit(X, y)
    s = det.score_samples(X)

    assert ood_scorer("auroc")(det, X, y) == auroc(y, s)
    assert ood_scorer("aupr_in", method="trapezoid")(det, X, y) == aupr_in(
        y, s, method="trapezoid"
    )
    # lower-is-better metrics come back negated
    fpr95 = fpr_at_tpr(y, s, 0.95)
    assert fpr95 > 0
    assert ood_scorer("neg_fpr95")(det, X, y) == -fpr95
    assert ood_scorer("neg_fpr95", positive="ood")(det, X, y) == -fpr_at_tpr(
        y, s, 0.95, positive="ood"
    )
    assert ood_scorer("neg_fpr_at_tpr", tpr=0.8, positive="ood")(det, X, y) == (
        -fpr_at_tpr(y, s, 0.8, positive="ood")
    )
    assert ood_scorer("neg_detection_error")(det, X, y) == -detection_error(y, s)
    assert type(ood_scorer("auroc")(det, X, y)) is float


def test_scorer_falls_back_to_decision_function():
    X, y = _mixed_data()
    det = _MeanDistanceDetector().fit(X, y)
    only_decision = _DecisionOnly().fit(X, y)
    for name in get_ood_scorer_names():
        scorer = ood_scorer(name)
        # decision_function = score_samples - offset_: same ranking, same metric
        assert scorer(only_decision, X, y) == pytest.approx(scorer(det, X, y))


def test_scorer_without_scores_raises():
    X, y = _mixed_data()
    with pytest.raises(TypeError, match="neither score_samples nor"):
        ood_scorer("auroc")(_NoScores().fit(X, y), X, y)


def test_scorer_needs_labels_and_rejects_sample_weight():
    X, y = _mixed_data()
    det = _MeanDistanceDetector().fit(X, y)
    with pytest.raises(ValueError, match="needs the labels y"):
        ood_scorer("auroc")(det, X, None)
    with pytest.raises(ValueError, match="sample_weight"):
        ood_scorer("auroc")(det, X, y, sample_weight=np.ones(len(y)))


def test_callable_metric():
    X, y = _mixed_data()
    det = _MeanDistanceDetector().fit(X, y)
    s = det.score_samples(X)

    def ood_accepted(y_true, scores, threshold=0.0):
        return float(np.mean(np.asarray(scores)[np.asarray(y_true) < 0] >= threshold))

    scorer = ood_scorer(ood_accepted, greater_is_better=False, threshold=-2.0)
    assert scorer(det, X, y) == -ood_accepted(y, s, threshold=-2.0)
    assert ood_scorer(ood_accepted)(det, X, y) == ood_accepted(y, s)
    assert repr(scorer) == (
        "ood_scorer(ood_accepted, greater_is_better=False, threshold=-2.0)"
    )


def test_repr():
    assert repr(ood_scorer("auroc")) == "ood_scorer('auroc')"
    assert repr(ood_scorer("neg_fpr95")) == "ood_scorer('neg_fpr95')"
    assert (
        repr(ood_scorer("neg_fpr_at_tpr", tpr=0.9, positive="ood"))
        == "ood_scorer('neg_fpr_at_tpr', tpr=0.9, positive='ood')"
    )
    assert (
        repr(ood_scorer("aupr_out", method="trapezoid"))
        == "ood_scorer('aupr_out', method='trapezoid')"
    )


def test_bad_scorer_arguments_raise():
    with pytest.raises(ValueError, match="Unknown OOD metric 'fpr'") as info:
        ood_scorer("fpr")
    for name in get_ood_scorer_names():
        assert repr(name) in str(info.value)
    with pytest.raises(ValueError, match="Unknown OOD metric"):
        ood_scorer("roc_auc")
    with pytest.raises(ValueError, match="Unknown OOD metric"):
        ood_scorer(None)
    with pytest.raises(ValueError, match="unexpected keyword argument 'tpr'"):
        ood_scorer("neg_fpr95", tpr=0.9)
    with pytest.raises(ValueError, match="unexpected keyword argument 'method'"):
        ood_scorer("auroc", method="trapezoid")
    with pytest.raises(ValueError, match=re.escape("tpr must be a number in (0, 1]")):
        ood_scorer("neg_fpr_at_tpr", tpr=95)
    with pytest.raises(ValueError, match="positive must be one of"):
        ood_scorer("neg_fpr95", positive="OOD")
    with pytest.raises(ValueError, match="method must be one of"):
        ood_scorer("aupr_in", method="auc")
    with pytest.raises(ValueError, match="lower-is-better"):
        ood_scorer("neg_fpr95", greater_is_better=True)
    # a consistent greater_is_better is fine
    assert repr(ood_scorer("auroc", greater_is_better=True)) == "ood_scorer('auroc')"


def test_scorer_pickles_and_passes_check_scoring():
    X, y = _mixed_data()
    det = _MeanDistanceDetector().fit(X, y)
    scorer = ood_scorer("neg_fpr_at_tpr", tpr=0.9)
    restored = pickle.loads(pickle.dumps(scorer))
    assert restored(det, X, y) == scorer(det, X, y)
    assert check_scoring(det, scoring=scorer)(det, X, y) == scorer(det, X, y)


# --------------------------------------------------------------------------
# Model selection
# --------------------------------------------------------------------------


def test_grid_search_single_metric():
    X, y = _mixed_data()
    search = GridSearchCV(
        _MeanDistanceDetector(),
        {"shrink": [0.0, 0.5, 1.0]},
        scoring=ood_scorer("auroc"),
        cv=CV,
        error_score="raise",
    ).fit(X, y)
    assert search.best_params_ == {"shrink": 1.0}
    assert 0.5 < search.best_score_ <= 1.0
    # shrink=0 puts the center on the OOD cluster: worse than chance
    assert search.cv_results_["mean_test_score"][0] < 0.5


def test_grid_search_multi_metric_refit_on_neg_fpr95():
    X, y = _mixed_data()
    scoring = {
        "auroc": ood_scorer("auroc"),
        "neg_fpr95": ood_scorer("neg_fpr95"),
        "det_err": ood_scorer("neg_detection_error"),
    }
    search = GridSearchCV(
        _MeanDistanceDetector(),
        {"shrink": [0.0, 0.5, 1.0]},
        scoring=scoring,
        refit="neg_fpr95",
        cv=CV,
        error_score="raise",
    ).fit(X, y)
    assert search.best_params_ == {"shrink": 1.0}
    assert np.all(search.cv_results_["mean_test_neg_fpr95"] <= 0)
    assert np.all(search.cv_results_["mean_test_det_err"] <= 0)
    assert np.all(search.cv_results_["mean_test_auroc"] >= 0)


def test_cross_validate_pipeline_multi_metric():
    X, y = _mixed_data()
    pipe = Pipeline([("scale", StandardScaler()), ("ood", _MeanDistanceDetector())])
    scoring = {"auroc": ood_scorer("auroc"), "neg_fpr95": ood_scorer("neg_fpr95")}
    results = cross_validate(pipe, X, y, cv=CV, scoring=scoring, error_score="raise")

    for i, (train, test) in enumerate(CV.split(X, y)):
        fitted = clone(pipe).fit(X[train], y[train])
        s = fitted.score_samples(X[test])
        assert results["test_auroc"][i] == auroc(y[test], s)
        assert results["test_neg_fpr95"][i] == -fpr_at_tpr(y[test], s, 0.95)


def test_grid_search_pipeline():
    X, y = _mixed_data()
    pipe = Pipeline([("scale", StandardScaler()), ("ood", _MeanDistanceDetector())])
    search = GridSearchCV(
        pipe,
        {"ood__shrink": [0.0, 1.0]},
        scoring={"auroc": ood_scorer("auroc"), "neg_fpr95": ood_scorer("neg_fpr95")},
        refit="auroc",
        cv=CV,
        error_score="raise",
    ).fit(X, y)
    assert search.best_params_ == {"ood__shrink": 1.0}


@pytest.mark.parametrize("cv", [KFold(3), 3])
def test_unshuffled_kfold_raises_clear_error(cv):
    # OOD rows are appended at the end: un-shuffled KFold (also what an int
    # cv means for a detector) gives folds without any OOD row
    X, y = _mixed_data()
    search = GridSearchCV(
        _MeanDistanceDetector(),
        {"shrink": [1.0]},
        scoring={"auroc": ood_scorer("auroc"), "neg_fpr95": ood_scorer("neg_fpr95")},
        refit="auroc",
        cv=cv,
        error_score="raise",
    )
    with pytest.raises(ValueError, match=r"no OOD samples.*StratifiedKFold"):
        search.fit(X, y)


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_unshuffled_kfold_is_not_silent_with_default_error_score():
    X, y = _mixed_data()
    search = GridSearchCV(
        _MeanDistanceDetector(),
        {"shrink": [1.0]},
        scoring=ood_scorer("auroc"),
        cv=KFold(3),
    )
    with pytest.warns(UserWarning, match=r"contains no (OOD|ID) samples"):
        search.fit(X, y)
    for split in range(3):
        assert np.isnan(search.cv_results_[f"split{split}_test_score"]).all()


def test_stratified_shuffled_kfold_works():
    X, y = _mixed_data()
    results = cross_validate(
        _MeanDistanceDetector(),
        X,
        y,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring={"auroc": ood_scorer("auroc"), "neg_fpr95": ood_scorer("neg_fpr95")},
        error_score="raise",
    )
    assert np.all(np.isfinite(results["test_auroc"]))
    assert np.all(results["test_neg_fpr95"] <= 0)
