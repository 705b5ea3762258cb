"""TemperatureScaling and KLMatching against float64 references from the papers."""

import numpy as np
import pytest
from _helpers import streamed_offset
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from sklearn_ood.detectors import KLMatching, TemperatureScaling

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _logits(n=60, n_classes=5, scale=3.0, seed=0):
    return np.random.default_rng(seed).normal(scale=scale, size=(n, n_classes))


def _labels_from(logits, t, rng):
    """One label per row, drawn from softmax(logits / t)."""
    p = ref_softmax(logits, t)
    return (p.cumsum(axis=1) > rng.random((p.shape[0], 1))).argmax(axis=1)


# ---------------------------------------------------------------- references
# Plain float64 formulas without scipy or the package's helpers (moderate
# logits keep np.exp in range).
def ref_softmax(logits, t=1.0):
    z = logits / t
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_nll(logits, y, t):
    p = ref_softmax(logits, t)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


def ref_kl_scores(fit_logits, y, logits, match):
    """Templates and -KL(p || d_k), written loop-style."""
    p_fit = ref_softmax(fit_logits)
    groups = p_fit.argmax(axis=1) if y is None else np.asarray(y)
    templates = {}
    for k in sorted(set(groups.tolist())):
        templates[k] = p_fit[groups == k].mean(axis=0)
    scores = []
    for p in ref_softmax(logits):
        kl = {k: np.sum(p * np.log(p / d)) for k, d in templates.items()}
        pred = int(np.argmax(p))
        if match == "predicted" and pred in kl:
            scores.append(-kl[pred])
        else:
            scores.append(-min(kl.values()))
    return np.array(scores), templates


# ------------------------------------------------------- TemperatureScaling
def test_temperature_exact_on_labels_with_exact_frequencies():
    """Rows whose label frequencies equal softmax(l / T) exactly: MLE is T."""
    rng = np.random.default_rng(0)
    t_true, m, n_classes = 2.5, 20, 4
    rows, labels = [], []
    for _ in range(50):
        # counts / m is a probability vector; logits t * log(counts / m) + c
        # have softmax(l / t) = counts / m exactly.
        counts = rng.multinomial(m - n_classes, np.ones(n_classes) / n_classes) + 1
        logit = t_true * np.log(counts / m) + rng.normal()
        rows.append(np.repeat(logit[np.newaxis], m, axis=0))
        labels.append(np.repeat(np.arange(n_classes), counts))
    X, y = np.vstack(rows), np.concatenate(labels)
    det = TemperatureScaling().fit(X, y)
    assert det.temperature_ == pytest.approx(t_true, rel=1e-10)


def test_temperature_recovered_from_sampled_labels():
    """Labels sampled from softmax(l / T): within 4 standard errors of T."""
    rng = np.random.default_rng(1)
    t_true = 2.5
    X = rng.normal(scale=6.0, size=(20_000, 10))
    y = _labels_from(X, t_true, rng)
    t_hat = TemperatureScaling().fit(X, y).temperature_
    # Fisher information of beta = 1/T per row: Var_{softmax(l/T)}[l].
    p = ref_softmax(X, t_true)
    var = (p * X**2).sum(axis=1) - (p * X).sum(axis=1) ** 2
    rel_se = 1.0 / np.sqrt(var.sum()) * t_true  # se(beta) / beta
    assert rel_se < 0.01
    assert abs(t_hat / t_true - 1) < 4 * rel_se


def test_temperature_minimises_nll_on_a_grid():
    rng = np.random.default_rng(2)
    X = _logits(n=500, scale=4.0, seed=2)
    y = _labels_from(X, 1.7, rng)
    t_hat = TemperatureScaling().fit(X, y).temperature_
    nll_hat = ref_nll(X, y, t_hat)
    for rel in (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5):
        for t in (t_hat * (1 + rel), t_hat / (1 + rel)):
            assert nll_hat <= ref_nll(X, y, t) + 1e-15
    # An independent coarse-to-fine brute-force search lands on the same T.
    grid = np.exp(np.linspace(np.log(0.05), np.log(50), 4001))
    t_grid = grid[np.argmin([ref_nll(X, y, t) for t in grid])]
    assert t_hat == pytest.approx(t_grid, rel=2e-3)


def test_temperature_score_matches_reference():
    rng = np.random.default_rng(3)
    X = _logits(seed=3)
    y = _labels_from(X, 2.0, rng)
    det = TemperatureScaling().fit(X, y)
    expected = ref_softmax(X, det.temperature_).max(axis=1)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-12)


def test_temperature_lower_nll_than_pytorch_ood():
    """pytorch-ood runs 50 float32 L-BFGS steps with lr=0.01; we reach the optimum."""
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    rng = np.random.default_rng(4)
    X = _logits(n=2000, scale=4.0, seed=4)
    y = _labels_from(X, 2.0, rng)
    theirs = detector_module.TemperatureScaling(None)
    theirs.fit_logits(torch.tensor(X, dtype=torch.float32), torch.tensor(y))
    t_theirs = float(theirs.t.item())
    ours = TemperatureScaling().fit(X, y)
    assert ref_nll(X, y, ours.temperature_) <= ref_nll(X, y, t_theirs)
    # Their score is the negated MSP at their temperature.
    their_scores = theirs.predict_logits(torch.tensor(X)).detach().numpy()
    np.testing.assert_allclose(
        -their_scores, ref_softmax(X, t_theirs).max(axis=1), rtol=1e-5
    )


def test_temperature_requires_labels():
    with pytest.raises(ValueError, match="requires y"):
        TemperatureScaling().fit(_logits())


def test_temperature_on_separable_labels_warns_and_stays_finite():
    X = _logits()
    with pytest.warns(ConvergenceWarning, match="no minimum"):
        det = TemperatureScaling().fit(X, X.argmax(axis=1))
    assert det.temperature_ == pytest.approx(1e-3)
    assert np.all(np.isfinite(det.score_samples(X)))


def test_temperature_float32_in_float32_out():
    rng = np.random.default_rng(5)
    X = _logits(seed=5)
    y = _labels_from(X, 2.0, rng)
    s64 = TemperatureScaling().fit(X, y).score_samples(X)
    s32 = TemperatureScaling().fit(X.astype(np.float32), y)
    s32 = s32.score_samples(X.astype(np.float32))
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-5)


# --------------------------------------------------------------- KLMatching
@pytest.mark.parametrize("match", ["min", "predicted"])
@pytest.mark.parametrize("labelled", [False, True])
def test_kl_matching_matches_reference(match, labelled):
    rng = np.random.default_rng(6)
    X_fit = _logits(n=80, seed=6)
    y = rng.integers(0, 4, size=80) if labelled else None  # class 4: no template
    X = _logits(n=30, seed=7)
    det = KLMatching(match=match).fit(X_fit, y)
    expected, templates = ref_kl_scores(X_fit, y, X, match)
    np.testing.assert_array_equal(det.classes_, sorted(templates))
    np.testing.assert_allclose(det.templates_, [templates[k] for k in det.classes_])
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("match", ["min", "predicted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kl_matching_in_blocks_matches_reference(monkeypatch, match, dtype):
    from sklearn_ood.detectors import _fitted_logits

    monkeypatch.setattr(_fitted_logits, "_BLOCK_ROWS", 7)  # blocks + a short one
    rng = np.random.default_rng(9)
    X_fit = _logits(n=200, n_classes=6, scale=4.0, seed=9).astype(dtype)
    y = rng.integers(0, 5, size=200)  # class 5: no template
    X = _logits(n=45, n_classes=6, scale=4.0, seed=10).astype(dtype)
    det = KLMatching(match=match).fit(X_fit, y)
    X64 = X_fit.astype(np.float64)
    expected, _ = ref_kl_scores(X64, y, X.astype(np.float64), match)
    scores = det.score_samples(X)
    assert scores.dtype == dtype
    # float32 input: float32 exp (see test_kl_matching_float32_within_the_stated_bound).
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(scores, expected, rtol=rtol, atol=1e-12)
    assert det.offset_ == pytest.approx(
        np.percentile(ref_kl_scores(X64, y, X64, match)[0], 5),
        rel=rtol,
    )


@pytest.mark.parametrize("match", ["min", "predicted"])
def test_kl_matching_float32_within_the_stated_bound(match):
    rng = np.random.default_rng(11)
    n_classes = 20
    centres = rng.normal(scale=4.0, size=(n_classes, n_classes))
    y_fit = rng.integers(0, n_classes, size=2000)
    X_fit = (centres[y_fit] + rng.normal(size=(2000, n_classes))).astype(np.float32)
    y_test = rng.integers(0, n_classes, size=500)
    X = centres[y_test] + rng.normal(scale=[[1.0]] * 250 + [[4.0]] * 250, size=(500, 1))
    X = (X + rng.normal(size=X.shape)).astype(np.float32)
    det = KLMatching(match=match).fit(X_fit)
    scores = det.score_samples(X)
    assert scores.dtype == np.float32
    X64 = X.astype(np.float64)
    expected, templates = ref_kl_scores(X_fit.astype(np.float64), None, X64, match)
    # Stated bound: 2**-21 (1 + max_k sum_j p_j (1 + |z_j|) |log(p_j / d_kj) - KL_k|)
    # plus the rounding of the score to float32.
    p = ref_softmax(X64)
    z = X64 - X64.max(axis=1, keepdims=True)
    terms = []
    for d in templates.values():
        log_ratio = np.log(p / d)
        kl = np.sum(p * log_ratio, axis=1, keepdims=True)
        terms.append(np.sum(p * (1 + np.abs(z)) * np.abs(log_ratio - kl), axis=1))
    bound = 2.0**-21 * (1 + np.max(terms, axis=0)) + 2.0**-24 * np.abs(expected)
    assert np.all(np.abs(scores - expected) <= bound)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)  # in practice


def test_kl_matching_keeps_sums_and_counts():
    X, y = _logits(n=50, seed=8), np.repeat([0, 2, 3, 4, 1], 10)
    det = KLMatching().fit(X, y)
    np.testing.assert_array_equal(det.class_counts_, [10, 10, 10, 10, 10])
    np.testing.assert_allclose(det.posterior_sums_.sum(axis=1), 10.0)
    np.testing.assert_allclose(
        det.templates_, det.posterior_sums_ / det.class_counts_[:, None]
    )


def test_kl_matching_predicted_without_template_falls_back_to_min():
    X_fit = np.array([[3.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    X = np.array([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])  # class 2 has no template
    pred = KLMatching(match="predicted").fit(X_fit).score_samples(X)
    best = KLMatching(match="min").fit(X_fit).score_samples(X)
    assert pred[0] == best[0]
    assert pred[1] <= best[1]


def test_kl_matching_agrees_with_pytorch_ood():
    """pytorch-ood 0.4.0 scores min_k KL over predicted-class templates."""
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X_fit, X = _logits(n=80, seed=9), _logits(n=30, seed=10)
    y = np.where(np.arange(80) % 7 == 0, -1, 0)  # theirs uses y only to drop OOD
    theirs = detector_module.KLMatching(None)
    theirs.fit_logits(torch.from_numpy(X_fit), torch.from_numpy(y))
    their_scores = theirs.predict_logits(torch.from_numpy(X)).numpy()
    ours = KLMatching(match="min").fit(X_fit[y >= 0]).score_samples(X)
    np.testing.assert_allclose(ours, -their_scores, rtol=1e-10, atol=1e-12)


def test_kl_matching_zero_template_probabilities_stay_finite():
    # exp(-1000) underflows: template entries are exactly 0 in float64.
    X_fit = np.array([[1000.0, 0.0], [1001.0, 0.0], [0.0, 1000.0]])
    det = KLMatching().fit(X_fit)
    assert np.any(det.templates_ == 0)
    scores = det.score_samples(np.array([[0.0, 0.0], [1000.0, 0.0]]))
    assert np.all(np.isfinite(scores))
    assert scores[0] < scores[1]


# ------------------------------------------------------- shared conventions
FITTED = [
    TemperatureScaling(),
    KLMatching(match="min"),
    KLMatching(match="predicted"),
]


@pytest.mark.parametrize("det", FITTED, ids=repr)
def test_label_must_index_a_logit_column(det):
    X = _logits(n_classes=3)
    with pytest.raises(ValueError, match="only 3 logit columns"):
        det.fit(X, np.arange(60) % 4)


@pytest.mark.parametrize("det", FITTED, ids=repr)
def test_non_contiguous_labels(det):
    rng = np.random.default_rng(11)
    X = _logits(n=90, n_classes=13, seed=11)
    y = rng.choice([3, 7, 12], size=90)
    det.fit(X, y)
    np.testing.assert_array_equal(det.classes_, [3, 7, 12])
    assert np.all(np.isfinite(det.score_samples(X)))


@pytest.mark.parametrize("det", FITTED, ids=repr)
def test_single_logit_column_is_refused(det):
    # A binary classifier's decision_function as one column: the message
    # shows how to build the two logit columns.
    d = np.linspace(-3.0, 3.0, 20)[:, None]
    recipe = r"np\.column_stack\(\[np\.zeros_like\(d\), d\]\)"
    with pytest.raises(ValueError, match=r"n_features = 1\..*" + recipe):
        det.fit(d, (d[:, 0] > 0).astype(int))
    if hasattr(det, "partial_fit"):
        with pytest.raises(ValueError, match=recipe):
            clone(det).partial_fit(d, (d[:, 0] > 0).astype(int))


# ------------------------------------------------------------------ properties
def _fitted_attributes(det):
    # Public fitted state (private bookkeeping such as the offset sample's
    # random generator is not part of the model).
    return {
        k: v for k, v in vars(det).items() if k.endswith("_") and not k.startswith("_")
    }


@st.composite
def logits_and_labels(draw, max_rows=12):
    n_classes = draw(st.integers(2, 4))
    n = draw(st.integers(2, max_rows))
    X = draw(
        arrays(
            np.float64,
            (n, n_classes),
            elements=st.floats(-8, 8, allow_nan=False, width=32),
            unique=True,  # no ties: argmax is well defined
        )
    )
    y = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    return X, y


@pytest.mark.parametrize("det", FITTED, ids=repr)
@settings(deadline=None, max_examples=25)
@given(data=logits_and_labels(), n_ood=st.integers(1, 5), seed=st.integers(0, 99))
def test_ood_rows_do_not_change_the_fit(det, data, n_ood, seed):
    X, y = data
    rng = np.random.default_rng(seed)
    # OOD rows interleaved at random positions; the ID rows keep their order.
    is_id = np.zeros(len(y) + n_ood, dtype=bool)
    is_id[rng.choice(is_id.size, len(y), replace=False)] = True
    X_all = rng.normal(scale=5, size=(is_id.size, X.shape[1]))
    X_all[is_id] = X
    y_all = np.full(is_id.size, -1)
    y_all[is_id] = y
    a = _fitted_attributes(det.fit(X, y))
    b = _fitted_attributes(det.fit(X_all, y_all))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(
        det.fit(X, y).score_samples(X_all), det.score_samples(X_all)
    )


@pytest.mark.parametrize("det", FITTED, ids=repr)
@settings(deadline=None, max_examples=25)
@given(data=logits_and_labels(), seed=st.integers(0, 99))
def test_scores_commute_with_row_permutation(det, data, seed):
    X, y = data
    p = np.random.default_rng(seed).permutation(len(y))
    det.fit(X, y)
    np.testing.assert_allclose(
        det.score_samples(X[p]), det.score_samples(X)[p], rtol=1e-12, atol=1e-15
    )
    np.testing.assert_array_equal(
        det.predict(X), np.where(det.decision_function(X) >= 0, 1, -1)
    )


@pytest.mark.parametrize("det", FITTED, ids=repr)
@settings(deadline=None, max_examples=25)
@given(data=logits_and_labels(), seed=st.integers(0, 99))
def test_scores_invariant_to_class_permutation(det, data, seed):
    X, y = data
    perm = np.random.default_rng(seed).permutation(X.shape[1])
    # Column j of X[:, perm] is column perm[j] of X: label c moves to inv[c].
    inv = np.argsort(perm)
    s = det.fit(X, y).score_samples(X)
    s_perm = det.fit(X[:, perm], inv[y]).score_samples(X[:, perm])
    np.testing.assert_allclose(s_perm, s, rtol=1e-7, atol=1e-12)


@settings(deadline=None, max_examples=25)
@given(data=logits_and_labels(), seed=st.integers(0, 99))
def test_kl_matching_unlabelled_invariant_to_class_permutation(data, seed):
    X, _ = data
    perm = np.random.default_rng(seed).permutation(X.shape[1])
    for match in ("min", "predicted"):
        det = KLMatching(match=match)
        s = det.fit(X).score_samples(X)
        s_perm = det.fit(X[:, perm]).score_samples(X[:, perm])
        np.testing.assert_allclose(s_perm, s, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("with_labels", [True, False])
def test_klmatching_partial_fit_equals_fit(with_labels):
    rng = np.random.default_rng(3)
    X = rng.normal(scale=2.0, size=(300, 6))
    y = rng.integers(0, 6, size=300) if with_labels else None
    whole = KLMatching().fit(X, y)
    streamed = KLMatching()
    # Class 5 first appears in the last chunk.
    if with_labels:
        y = np.where(np.arange(300) < 200, np.minimum(y, 4), y)
        whole = KLMatching().fit(X, y)
    chunks = [
        (X[rows], None if y is None else y[rows])
        for rows in np.array_split(np.arange(300), 5)
    ]
    for chunk in chunks:
        streamed.partial_fit(*chunk)
    np.testing.assert_array_equal(streamed.classes_, whole.classes_)
    np.testing.assert_allclose(streamed.templates_, whole.templates_, atol=1e-12)
    assert streamed.offset_ == pytest.approx(
        streamed_offset(streamed, chunks), rel=1e-10
    )
    np.testing.assert_allclose(
        streamed.score_samples(X), whole.score_samples(X), atol=1e-12
    )


def test_temperature_search_converges_when_a_label_ties_the_largest_logit():
    # Found by hypothesis: the NLL slope decays exponentially, so plain Newton
    # steps crawl; the safeguarded search must still return the minimiser.
    X = np.array([[-4.5e-23, 0.0], [2.0, 1.0]])
    y = np.array([0, 0])
    det = TemperatureScaling().fit(X, y)
    beta = 1.0 / det.temperature_
    grid = np.geomspace(beta / 1.5, beta * 1.5, 41)

    def nll(b):
        z = X * b
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -log_p[np.arange(2), y].mean()

    assert nll(beta) <= min(nll(b) for b in grid) + 1e-12
