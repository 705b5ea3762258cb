"""OpenMax against a loop-style float64 reference written from the paper."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import distance as spd
from scipy.stats import weibull_min
from sklearn.metrics import roc_auc_score

from sklearn_ood.detectors import OpenMax
from sklearn_ood.detectors._openmax import _fit_weibull, _weibull_cdf


def _toy(n_per_class=30, n_classes=4, margin=6.0, noise=1.0, seed=0):
    """Logits of a decent classifier: class k's rows peak at column k."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = margin * np.eye(n_classes)[y] + rng.normal(
        scale=noise, size=(y.size, n_classes)
    )
    return X, y


# ---------------------------------------------------------------- reference
def ref_distance(a, b, kind):
    if kind == "euclidean":
        return spd.euclidean(a, b)
    if kind == "cosine":
        return spd.cosine(a, b)
    return spd.euclidean(a, b) / 200.0 + spd.cosine(a, b)


def ref_fit(X, y, tailsize, kind):
    """Per class: MAV of the correct rows, Weibull on the largest distances."""
    models = {}
    for k in sorted(set(y.tolist())):
        rows = [x for x, label in zip(X, y) if label == k and np.argmax(x) == k]
        mav = np.mean(rows, axis=0)
        dists = sorted(ref_distance(x, mav, kind) for x in rows)
        shape, _, scale = weibull_min.fit(dists[-tailsize:], floc=0)
        models[k] = (mav, shape, scale)
    return models


def ref_score(models, X, alpha, kind, score_type):
    scores = []
    for x in X:
        ranked = sorted(range(len(x)), key=lambda j: -x[j])
        revised = list(x)
        for r, k in enumerate(ranked[:alpha], start=1):
            if k in models:
                mav, shape, scale = models[k]
                cdf = weibull_min.cdf(ref_distance(x, mav, kind), shape, scale=scale)
            else:
                cdf = 1.0  # no model: infinitely far
            revised[k] = x[k] * (1 - (alpha - r + 1) / alpha * cdf)
        unknown = sum(x[k] - revised[k] for k in range(len(x)))
        e = np.exp(np.array([unknown] + revised))
        p = e / e.sum()
        scores.append(1 - p[0] if score_type == "unknown" else p[1:].max())
    return np.array(scores)


@pytest.mark.parametrize("kind", ["eucos", "euclidean", "cosine"])
@pytest.mark.parametrize("score_type", ["unknown", "max_known"])
@pytest.mark.parametrize("alpha", [1, 3])
def test_matches_reference(kind, score_type, alpha):
    X, y = _toy(noise=2.0)  # some rows misclassified
    det = OpenMax(
        tailsize=10, n_revised_classes=alpha, distance=kind, score_type=score_type
    )
    det.fit(X, y)
    models = ref_fit(X, y, 10, kind)
    np.testing.assert_allclose(det.means_, [models[k][0] for k in det.classes_])
    np.testing.assert_allclose(
        det.weibull_shape_, [models[k][1] for k in det.classes_], rtol=1e-6
    )
    np.testing.assert_allclose(
        det.weibull_scale_, [models[k][2] for k in det.classes_], rtol=1e-6
    )
    X_test = np.vstack([_toy(n_per_class=5, noise=2.0, seed=1)[0], _toy(seed=2)[0][:5]])
    X_test = np.vstack([X_test, np.random.default_rng(3).normal(scale=4, size=(10, 4))])
    expected = ref_score(models, X_test, alpha, kind, score_type)
    np.testing.assert_allclose(
        det.score_samples(X_test), expected, rtol=1e-6, atol=1e-9
    )


def test_columns_without_a_model_count_as_far():
    X, y = _toy(n_classes=4)
    keep = y != 2  # column 2 has no fit rows
    det = OpenMax(tailsize=10, n_revised_classes=3, distance="euclidean").fit(
        X[keep], y[keep]
    )
    np.testing.assert_array_equal(det.classes_, [0, 1, 3])
    models = ref_fit(X[keep], y[keep], 10, "euclidean")
    expected = ref_score(models, X, 3, "euclidean", "unknown")
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-6, atol=1e-9)


def test_unlabelled_fit_uses_the_predicted_class():
    X, y = _toy(noise=2.0)
    pred = X.argmax(axis=1)
    a = OpenMax(tailsize=10, n_revised_classes=2).fit(X)
    b = OpenMax(tailsize=10, n_revised_classes=2).fit(X, pred)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.weibull_shape_, b.weibull_shape_)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))


def test_tailsize_is_clipped_to_the_correct_rows():
    X, y = _toy(n_per_class=8, noise=0.5)
    det = OpenMax(tailsize=20, n_revised_classes=2).fit(X, y)
    np.testing.assert_array_equal(det.tail_sizes_, 8)
    det = OpenMax(tailsize=5, n_revised_classes=2).fit(X, y)
    np.testing.assert_array_equal(det.tail_sizes_, 5)


@pytest.mark.parametrize("score_type", ["unknown", "max_known"])
def test_far_rows_score_lower_than_id_rows(score_type):
    # As in the paper, the tail (20 rows) is a small share of each class.
    X, y = _toy(n_per_class=300)
    X_id, _ = _toy(n_per_class=50, seed=1)
    rng = np.random.default_rng(2)
    # OOD logits far from every MAV in every distance: flat rows, rows torn
    # between two classes, rows pointing away from one class.
    first = rng.integers(0, 4, size=40)
    second = (first + rng.integers(1, 4, size=40)) % 4
    ood_sets = [
        rng.normal(scale=0.5, size=(40, 4)),
        4.0 * (np.eye(4)[first] + np.eye(4)[second]) + rng.normal(size=(40, 4)),
        -6.0 * np.eye(4)[first] + rng.normal(size=(40, 4)),
    ]
    for kind in ("eucos", "euclidean", "cosine"):
        det = OpenMax(
            tailsize=20, n_revised_classes=2, distance=kind, score_type=score_type
        )
        s_id = det.fit(X, y).score_samples(X_id)
        for X_ood in ood_sets:
            s_ood = det.score_samples(X_ood)
            labels = np.r_[np.ones(len(s_id)), np.zeros(len(s_ood))]
            assert roc_auc_score(labels, np.r_[s_id, s_ood]) > 0.95, kind
        assert np.mean(det.predict(X_id) == 1) > 0.9, kind


def test_agrees_with_pytorch_ood_recalibration():
    """Same MAVs and Weibull CDFs: pytorch-ood's revision gives P_0 = 1 - ours.

    pytorch-ood fits its Weibulls the libMR way (shifted data) and on all rows
    of a class, so we give it our CDFs through stand-in models and our
    correctly classified rows; its numpy OpenMax needs no libmr.
    """
    pytest.importorskip("torch")
    numpy_openmax = pytest.importorskip("pytorch_ood.detector.openmax.numpy")
    X, y = _toy(noise=1.5)
    correct = X.argmax(axis=1) == y
    X_test = np.vstack([X, np.random.default_rng(1).normal(scale=3, size=(30, 4))])
    for kind, euclid_weight in (("euclidean", 1.0), ("cosine", 0.0)):
        ours = OpenMax(tailsize=10, n_revised_classes=3, distance=kind).fit(X, y)
        theirs = numpy_openmax.OpenMax(
            tailsize=10, alpha=3, euclid_weight=euclid_weight
        )
        theirs.fit(X[correct], y[correct])
        for i, k in enumerate(ours.classes_):
            np.testing.assert_allclose(theirs.centers[k], ours.means_[i])
            theirs.distributions[k] = _StandIn(
                ours.weibull_shape_[i], ours.weibull_scale_[i]
            )
        # Every column is some row's argmax, so theirs computes every distance.
        assert set(X_test.argmax(axis=1)) == set(range(4))
        p_unknown = theirs.predict(X_test)[:, 0]
        np.testing.assert_allclose(
            ours.score_samples(X_test), 1 - p_unknown, rtol=1e-9, atol=1e-12
        )


class _StandIn:
    def __init__(self, shape, scale):
        self.shape, self.scale = shape, scale

    def w_score(self, d):
        return _weibull_cdf(d, self.shape, self.scale)


# ------------------------------------------------------------------ Weibull
@pytest.mark.parametrize("shape, scale", [(0.8, 1.0), (2.5, 3.0), (40.0, 10.0)])
def test_weibull_fit_recovers_shape_and_scale(shape, scale):
    data = weibull_min.rvs(shape, scale=scale, size=5000, random_state=0)
    fitted_shape, fitted_scale = _fit_weibull(data)
    # Standard errors at n = 5000: ~1.1% of the shape, < 1% of the scale.
    assert fitted_shape == pytest.approx(shape, rel=0.05)
    assert fitted_scale == pytest.approx(scale, rel=0.03)


def test_weibull_cdf_matches_scipy():
    d = np.linspace(0, 10, 41)
    np.testing.assert_allclose(
        _weibull_cdf(d, 2.5, 3.0), weibull_min.cdf(d, 2.5, scale=3.0), rtol=1e-12
    )


def test_degenerate_tail_gives_a_step():
    assert _fit_weibull(np.array([2.0, 2.0, 2.0])) == (np.inf, 2.0)
    assert _fit_weibull(np.array([0.0, 0.0, 3.0])) == (np.inf, 3.0)
    assert _fit_weibull(np.zeros(4)) == (np.inf, 0.0)
    np.testing.assert_allclose(
        _weibull_cdf(np.array([1.0, 2.0, 3.0]), np.inf, 2.0), [0, 1 - np.exp(-1), 1]
    )
    np.testing.assert_allclose(
        _weibull_cdf(np.array([0.0, 1e-9]), np.inf, 0.0), [1 - np.exp(-1), 1]
    )


def test_duplicated_rows_and_zero_rows_stay_finite():
    X = np.array([[3.0, 0.0, 0.0]] * 4 + [[0.0, 3.0, 0.0]] * 4 + [[0, 0, 3.0]] * 4)
    for kind in ("eucos", "euclidean", "cosine"):
        det = OpenMax(n_revised_classes=3, distance=kind).fit(X)
        assert np.all(np.isinf(det.weibull_shape_))
        scores = det.score_samples(np.vstack([X, np.zeros((1, 3)), X + 1]))
        assert np.all(np.isfinite(scores)), kind
        # A fit row sits at its MAV: distance 0 < the step (at 0): F = 1 - 1/e.
        assert np.all(scores[:12] == scores[0])


# ------------------------------------------------------------------- errors
def test_n_revised_classes_larger_than_the_classes_is_refused():
    X, y = _toy(n_classes=3)
    with pytest.raises(
        ValueError, match="n_revised_classes=4 exceeds the number of classes"
    ):
        OpenMax(n_revised_classes=4).fit(X, y)


def test_too_few_correct_rows_are_refused():
    X, y = _toy(n_per_class=10)
    X[y == 1] = X[y == 1][:, [1, 0, 2, 3]]  # class 1 is always predicted as 0
    with pytest.raises(ValueError, match="at least 3 correctly classified.*class 1"):
        OpenMax(n_revised_classes=2).fit(X, y)


def test_label_must_index_a_logit_column():
    X, y = _toy(n_classes=3)
    with pytest.raises(ValueError, match="only 3 logit columns"):
        OpenMax(n_revised_classes=2).fit(X, np.where(y == 2, 5, y))


def test_one_feature_and_one_sample_are_refused():
    # One column, e.g. a binary classifier's decision_function d: the message
    # shows how to build two logit columns.
    recipe = r"np\.column_stack\(\[np\.zeros_like\(d\), d\]\)"
    with pytest.raises(ValueError, match=r"n_features = 1\..*" + recipe):
        OpenMax(n_revised_classes=1).fit(np.linspace(-3, 3, 10)[:, None])
    with pytest.raises(ValueError, match="n_samples = 1"):
        OpenMax(n_revised_classes=1).fit(np.ones((1, 10)))


def test_non_contiguous_labels():
    rng = np.random.default_rng(0)
    y = np.repeat([3, 7, 12], 10)
    X = 6.0 * np.eye(13)[y] + rng.normal(size=(30, 13))
    det = OpenMax(n_revised_classes=5).fit(X, y)
    np.testing.assert_array_equal(det.classes_, [3, 7, 12])
    assert np.all(np.isfinite(det.score_samples(X)))


def test_float32_in_float32_out():
    X, y = _toy()
    s64 = OpenMax(n_revised_classes=2).fit(X, y).score_samples(X)
    X32 = X.astype(np.float32)
    s32 = OpenMax(n_revised_classes=2).fit(X32, y).score_samples(X32)
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------- properties
DETECTORS = [
    OpenMax(tailsize=5, n_revised_classes=2),
    OpenMax(tailsize=8, n_revised_classes=1, distance="cosine", score_type="max_known"),
    OpenMax(tailsize=5, n_revised_classes=3, distance="euclidean"),
]
toy_params = {
    "n_classes": st.integers(3, 4),
    "n_per_class": st.integers(4, 10),
    "noise": st.floats(0.3, 2.0),
    "seed": st.integers(0, 2**16),
}


def _fitted_attributes(det):
    # offset_ is a property: compare its value, not the holder behind it.
    fitted = {k: v for k, v in vars(det).items() if k.endswith("_")}
    fitted["_threshold_"] = det.offset_
    return fitted


def _draw_toy(n_classes, n_per_class, noise, seed):
    X, y = _toy(n_per_class, n_classes, margin=6.0, noise=noise, seed=seed)
    correct = X.argmax(axis=1) == y  # keep the fit valid: >= 3 correct rows
    for k in range(n_classes):
        if np.sum(correct & (y == k)) < 3:
            X[y == k, k] += 100.0
    return X, y


@pytest.mark.parametrize("det", DETECTORS, ids=repr)
@settings(deadline=None, max_examples=15)
@given(**toy_params, n_ood=st.integers(1, 5))
def test_ood_rows_do_not_change_the_fit(
    det, n_classes, n_per_class, noise, seed, n_ood
):
    X, y = _draw_toy(n_classes, n_per_class, noise, seed)
    rng = np.random.default_rng(seed)
    is_id = np.zeros(len(y) + n_ood, dtype=bool)
    is_id[rng.choice(is_id.size, len(y), replace=False)] = True
    X_all = rng.normal(scale=5, size=(is_id.size, n_classes))
    X_all[is_id] = X
    y_all = np.full(is_id.size, -1)
    y_all[is_id] = y
    a = _fitted_attributes(det.fit(X, y))
    s = det.score_samples(X_all)
    b = _fitted_attributes(det.fit(X_all, y_all))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(det.score_samples(X_all), s)


@pytest.mark.parametrize("det", DETECTORS, ids=repr)
@settings(deadline=None, max_examples=15)
@given(**toy_params)
def test_scores_commute_with_row_permutation(det, n_classes, n_per_class, noise, seed):
    X, y = _draw_toy(n_classes, n_per_class, noise, seed)
    X_test = np.vstack([X, np.random.default_rng(seed).normal(size=(5, n_classes))])
    p = np.random.default_rng(seed + 1).permutation(len(X_test))
    det.fit(X, y)
    np.testing.assert_allclose(
        det.score_samples(X_test[p]),
        det.score_samples(X_test)[p],
        rtol=1e-12,
        atol=1e-15,
    )
    np.testing.assert_array_equal(
        det.predict(X_test), np.where(det.decision_function(X_test) >= 0, 1, -1)
    )


@pytest.mark.parametrize("det", DETECTORS, ids=repr)
@settings(deadline=None, max_examples=15)
@given(**toy_params)
def test_scores_invariant_to_class_permutation(
    det, n_classes, n_per_class, noise, seed
):
    X, y = _draw_toy(n_classes, n_per_class, noise, seed)
    X_test = np.vstack([X, np.random.default_rng(seed).normal(size=(5, n_classes))])
    perm = np.random.default_rng(seed + 1).permutation(n_classes)
    inv = np.argsort(perm)  # label c is column inv[c] of X[:, perm]
    s = det.fit(X, y).score_samples(X_test)
    s_perm = det.fit(X[:, perm], inv[y]).score_samples(X_test[:, perm])
    # The Weibull MLE is iterative: tiny differences in the distances move it
    # by up to its tolerance.
    np.testing.assert_allclose(s_perm, s, rtol=1e-5, atol=1e-7)
