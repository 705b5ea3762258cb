"""Logit-space detectors against float64 references written from the papers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sklearn_ood.detectors import (
    GEN,
    Energy,
    Entropy,
    MaxLogit,
    MaxSoftmax,
    WeightedEnergy,
)

LOGIT_DETECTORS = [MaxSoftmax, MaxLogit, Energy, WeightedEnergy, Entropy, GEN]


def _logits(n=40, n_classes=5, scale=3.0, seed=0):
    return np.random.default_rng(seed).normal(scale=scale, size=(n, n_classes))


# ---------------------------------------------------------------- references
# Plain float64 formulas, deliberately written without scipy or the package's
# helpers (moderate logits keep np.exp in range).
def ref_softmax(logits, t=1.0):
    e = np.exp(logits / t)
    return e / e.sum(axis=1, keepdims=True)


def ref_msp(logits, t=1.0):
    return ref_softmax(logits, t).max(axis=1)


def ref_energy(logits, t=1.0, w=None):
    w = np.ones(logits.shape[1]) if w is None else np.asarray(w)
    return t * np.log((w * np.exp(logits / t)).sum(axis=1))


def ref_entropy(logits):
    p = ref_softmax(logits)
    return (p * np.log(p)).sum(axis=1)


def ref_gen(logits, gamma, top_m=None):
    p = ref_softmax(logits)
    n, c = p.shape
    # 1 - p_j written as the sum of the other probabilities (exact for p -> 1).
    not_j = ~np.eye(c, dtype=bool)
    q = np.array([[p[i, not_j[j]].sum() for j in range(c)] for i in range(n)])
    order = np.argsort(-p, axis=1)[:, :top_m]
    p, q = np.take_along_axis(p, order, 1), np.take_along_axis(q, order, 1)
    return -(p**gamma * q**gamma).sum(axis=1)


@pytest.mark.parametrize(
    "detector, reference",
    [
        (MaxSoftmax(), ref_msp),
        (MaxSoftmax(temperature=7.5), lambda x: ref_msp(x, 7.5)),
        (MaxLogit(), lambda x: x.max(axis=1)),
        (Energy(), ref_energy),
        (Energy(temperature=0.3), lambda x: ref_energy(x, 0.3)),
        (
            WeightedEnergy(weights=[0.5, 2.0, 0.0, 1.0, 3.0], temperature=2.0),
            lambda x: ref_energy(x, 2.0, [0.5, 2.0, 0.0, 1.0, 3.0]),
        ),
        (Entropy(), ref_entropy),
        (GEN(), lambda x: ref_gen(x, 0.1)),
        (GEN(gamma=0.5, top_m=2), lambda x: ref_gen(x, 0.5, 2)),
    ],
    ids=lambda v: repr(v) if not callable(v) or hasattr(v, "fit") else "",
)
def test_scores_match_float64_reference(detector, reference):
    X = _logits()
    scores = detector.fit(X).score_samples(X)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, reference(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", LOGIT_DETECTORS)
def test_float32_in_float32_out_and_close_to_float64(cls):
    X = _logits()
    s64 = cls().fit(X).score_samples(X)
    s32 = cls().fit(X.astype(np.float32)).score_samples(X.astype(np.float32))
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-5, atol=1e-5)


def test_extreme_logits_stay_finite():
    X = np.array([[1000.0, -1000.0, 0.0], [-800.0, -800.0, -800.0]])
    for cls in LOGIT_DETECTORS:
        scores = cls().fit(X).score_samples(X)
        assert np.all(np.isfinite(scores)), cls.__name__
    np.testing.assert_allclose(MaxSoftmax().fit(X).score_samples(X), [1.0, 1 / 3])
    np.testing.assert_allclose(
        Energy().fit(X).score_samples(X), [1000.0, -800.0 + np.log(3)]
    )


def test_weighted_energy_with_unit_weights_is_energy():
    X = _logits()
    np.testing.assert_allclose(
        WeightedEnergy(weights=np.ones(5)).fit(X).score_samples(X),
        Energy().fit(X).score_samples(X),
    )


def test_contamination_sets_training_rejection_rate():
    X = _logits(n=1000)
    for cls in LOGIT_DETECTORS:
        det = cls(contamination=0.1).fit(X)
        assert abs(np.mean(det.predict(X) == -1) - 0.1) <= 0.002, cls.__name__


# ------------------------------------------------------- cross-check pytorch-ood
@pytest.mark.parametrize(
    "ours, theirs_name, theirs_kwargs",
    [
        (MaxSoftmax(), "MaxSoftmax", {}),
        (MaxSoftmax(temperature=5.0), "MaxSoftmax", {"t": 5.0}),
        (MaxLogit(), "MaxLogit", {}),
        (Energy(temperature=2.0), "EnergyBased", {"t": 2.0}),
        (Entropy(), "Entropy", {}),
    ],
)
def test_agrees_with_pytorch_ood(ours, theirs_name, theirs_kwargs):
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X = _logits()
    theirs = getattr(detector_module, theirs_name)(None, **theirs_kwargs)
    their_scores = theirs.predict_logits(torch.from_numpy(X)).numpy()
    ours_scores = ours.fit(X).score_samples(X)
    # Theirs are outlier scores (or H for Entropy): ours is the negation.
    np.testing.assert_allclose(ours_scores, -their_scores, rtol=1e-10, atol=1e-10)


def test_gen_is_pytorch_ood_times_m():
    """pytorch-ood averages the top-M terms (and clamps p); we sum them."""
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X = _logits(scale=1.0)
    for top_m in (None, 3):
        theirs = detector_module.GEN(None, gamma=0.1, M=top_m)
        their_scores = theirs.predict_logits(torch.from_numpy(X)).numpy()
        m = X.shape[1] if top_m is None else top_m
        ours = GEN(gamma=0.1, top_m=top_m).fit(X).score_samples(X)
        np.testing.assert_allclose(ours, -m * their_scores, rtol=1e-6)


def test_weighted_energy_agrees_with_pytorch_ood():
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X = _logits()
    w = np.array([0.5, 2.0, 0.1, 1.0, 3.0])
    theirs = detector_module.WeightedEBO(None, weights=torch.from_numpy(w))
    their_scores = theirs.predict_logits(torch.from_numpy(X)).numpy()
    ours = WeightedEnergy(weights=w).fit(X).score_samples(X)
    np.testing.assert_allclose(ours, -their_scores, rtol=1e-10)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("cls", LOGIT_DETECTORS)
def test_one_logit_column_is_refused_with_the_two_column_recipe(cls):
    # Found by the edge-input battery: a binary classifier's decision_function
    # reshaped to one column gave every row the same MaxSoftmax, Entropy and
    # GEN score, silently.
    d = np.linspace(-3.0, 3.0, 20)[:, None]
    with pytest.raises(
        ValueError,
        match=r"n_features = 1\..*np\.column_stack\(\[np\.zeros_like\(d\), d\]\)",
    ):
        cls().fit(d)


def test_two_column_recipe_gives_the_binary_model_probabilities():
    """The recipe of the error message: softmax([0, d]) is predict_proba."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=60, random_state=0)
    model = LogisticRegression().fit(X, y)
    d = model.decision_function(X)
    logits = np.column_stack([np.zeros_like(d), d])
    msp = MaxSoftmax().fit(logits).score_samples(logits)
    np.testing.assert_allclose(msp, model.predict_proba(X).max(axis=1), rtol=1e-12)
    # [-d, d] is softmax of 2 d: the probabilities at temperature 2.
    symmetric = np.column_stack([-d, d])
    np.testing.assert_allclose(
        MaxSoftmax(temperature=2.0).fit(symmetric).score_samples(symmetric),
        msp,
        rtol=1e-12,
    )


def test_gen_top_m_larger_than_classes_raises():
    with pytest.raises(ValueError, match="top_m=6 exceeds"):
        GEN(top_m=6).fit(_logits())


@pytest.mark.parametrize(
    "weights, match",
    [
        ([1.0, 2.0], "expected shape"),
        ([1.0, -1.0, 1.0, 1.0, 1.0], "non-negative"),
        ([0.0] * 5, "not all be zero"),
        ([1.0, np.nan, 1.0, 1.0, 1.0], "finite"),
    ],
)
def test_weighted_energy_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        WeightedEnergy(weights=weights).fit(_logits())


@pytest.mark.parametrize("cls", LOGIT_DETECTORS)
def test_wrong_number_of_classes_at_score_time(cls):
    det = cls().fit(_logits(n_classes=5))
    with pytest.raises(ValueError, match="features"):
        det.score_samples(_logits(n_classes=4))


@pytest.mark.parametrize("param", [{"temperature": 0}, {"temperature": -1.0}])
def test_bad_temperature(param):
    with pytest.raises(ValueError, match="temperature"):
        MaxSoftmax(**param).fit(_logits())


# ------------------------------------------------------- hypothesis properties
finite = st.floats(-30, 30, allow_nan=False, width=64)


@st.composite
def logit_matrices(draw, min_classes=2):  # one column is refused
    n = draw(st.integers(2, 12))
    c = draw(st.integers(min_classes, 6))
    return draw(arrays(np.float64, (n, c), elements=finite))


@given(logit_matrices(), st.lists(finite, min_size=12, max_size=12))
def test_msp_invariant_to_per_row_constant(X, row_shifts):
    shifted = X + np.asarray(row_shifts[: len(X)])[:, None]
    det = MaxSoftmax().fit(X)
    np.testing.assert_allclose(det.score_samples(shifted), det.score_samples(X))


@given(logit_matrices(), finite)
def test_energy_shifts_with_a_global_constant(X, c):
    det = Energy().fit(X)
    scores, shifted = det.score_samples(X), det.score_samples(X + c)
    np.testing.assert_allclose(shifted, scores + c, atol=1e-9)
    # The ranking is kept: every pair that is clearly ordered stays ordered.
    gaps, shifted_gaps = (
        np.subtract.outer(scores, scores),
        np.subtract.outer(shifted, shifted),
    )
    clear = np.abs(gaps) > 1e-6
    assert np.array_equal(np.sign(gaps[clear]), np.sign(shifted_gaps[clear]))


@given(logit_matrices())
def test_msp_and_energy_bounds(X):
    n_classes = X.shape[1]
    msp = MaxSoftmax().fit(X).score_samples(X)
    assert np.all(msp >= 1 / n_classes - 1e-12) and np.all(msp <= 1 + 1e-12)
    energy = Energy().fit(X).score_samples(X)
    assert np.all(X.max(axis=1) <= energy + 1e-9)
    assert np.all(energy <= X.max(axis=1) + np.log(n_classes) + 1e-9)


@given(logit_matrices(), st.randoms(use_true_random=False))
def test_invariant_to_permuting_classes(X, random):
    perm = np.array(random.sample(range(X.shape[1]), X.shape[1]))
    for cls in LOGIT_DETECTORS:
        np.testing.assert_allclose(
            cls().fit(X).score_samples(X[:, perm]),
            cls().fit(X).score_samples(X),
            rtol=1e-9,  # summation order differs
            atol=1e-9,
        )


@given(logit_matrices(), logit_matrices())
def test_ood_rows_do_not_change_the_fit(X_id, X_ood):
    if X_ood.shape[1] != X_id.shape[1]:
        X_ood = np.resize(X_ood, (len(X_ood), X_id.shape[1]))
    X = np.vstack([X_id, X_ood])
    y = np.r_[np.zeros(len(X_id), int), -np.ones(len(X_ood), int)]
    for cls in LOGIT_DETECTORS:
        with_ood = cls().fit(X, y)
        without = cls().fit(X_id)
        assert with_ood.offset_ == without.offset_
        np.testing.assert_array_equal(
            with_ood.score_samples(X), without.score_samples(X)
        )


@given(logit_matrices(), st.randoms(use_true_random=False))
def test_scores_are_row_wise(X, random):
    perm = np.array(random.sample(range(len(X)), len(X)))
    for cls in LOGIT_DETECTORS:
        det = cls().fit(X)
        np.testing.assert_array_equal(
            det.score_samples(X[perm]), det.score_samples(X)[perm]
        )


@given(logit_matrices(), logit_matrices(), st.floats(0.01, 0.5))
def test_predict_is_sign_of_decision_function(X_fit, X, contamination):
    if X.shape[1] != X_fit.shape[1]:
        X = np.resize(X, (len(X), X_fit.shape[1]))
    for cls in LOGIT_DETECTORS:
        det = cls(contamination=contamination).fit(X_fit)
        np.testing.assert_array_equal(
            det.predict(X), np.where(det.decision_function(X) >= 0, 1, -1)
        )


def test_entropy_and_msp_keep_relative_precision_on_confident_rows():
    # Two classes, margin m: p2 = t / (1 + t) with t = exp(-m), and
    # sum p log p = -p1 log1p(t) - p2 (m + log1p(t)), ~ -m t: tiny but exact.
    margins = np.array([5.0, 20.0, 40.0, 200.0])
    t = np.exp(-margins)
    p1, p2 = 1 / (1 + t), t / (1 + t)
    expected = -p1 * np.log1p(t) - p2 * (margins + np.log1p(t))
    logits = np.column_stack([margins, np.zeros_like(margins)])
    scores = Entropy().fit(logits).score_samples(logits)
    np.testing.assert_allclose(scores, expected, rtol=1e-13)
    msp = MaxSoftmax().fit(logits).score_samples(logits)
    np.testing.assert_allclose(msp, p1, rtol=1e-15)
