"""KNN and NNGuide against brute-force float64 references (scipy cdist)."""

import tracemalloc

import numpy as np
import pytest
import scipy.linalg
import sklearn
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from sklearn_ood.detectors import _knn_search
from sklearn_ood.detectors._neighbors import KNN, NNGuide

HAVE_FAISS = _knn_search._import_faiss() is not None
ALGORITHMS = [
    "numpy",
    "sklearn",
    pytest.param(
        "faiss", marks=pytest.mark.skipif(not HAVE_FAISS, reason="needs faiss")
    ),
]


def _data(n=200, n_features=12, seed=0, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, n_features)) + shift


def _head(n_features=12, n_classes=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_classes, n_features)), rng.normal(size=n_classes)


# ---------------------------------------------------------------- references
# Brute force from the papers' formulas: every pairwise distance at once.
def ref_normalize(X):
    # Scale by the largest entry first so that norms of tiny rows do not
    # underflow (1e-160 ** 2 is subnormal); scipy's norm does the same.
    X = np.asarray(X, dtype=np.float64)
    norms = np.array([scipy.linalg.norm(row) for row in X])[:, None]
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def ref_knn(X_fit, Q, k, normalize=True, loo=False):
    """-(distance to the k-th nearest fit row); ``loo``: Q is X_fit, skip self."""
    if normalize:
        X_fit, Q = ref_normalize(X_fit), ref_normalize(Q)
    D = cdist(Q, X_fit)
    if loo:
        np.fill_diagonal(D, np.inf)
    return -np.sort(D, axis=1)[:, k - 1]


def ref_nnguide(X_fit, Q, W, b, k, loo=False):
    energy_fit = logsumexp(X_fit @ W.T + b, axis=1)
    energy_q = logsumexp(Q @ W.T + b, axis=1)
    bank = ref_normalize(X_fit) * energy_fit[:, None]
    S = ref_normalize(Q) @ bank.T
    if loo:
        np.fill_diagonal(S, -np.inf)
    guidance = -np.sort(-S, axis=1)[:, :k].mean(axis=1)
    return energy_q * guidance


# ----------------------------------------------------------- KNN vs reference
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_matches_float64_reference(algorithm, normalize, k):
    X, Q = _data(), _data(n=60, seed=1, shift=0.5)
    det = KNN(n_neighbors=k, normalize=normalize, algorithm=algorithm).fit(X)
    scores = det.score_samples(Q)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, ref_knn(X, Q, k, normalize), atol=1e-10)
    loo = ref_knn(X, X, k, normalize, loo=True)
    np.testing.assert_allclose(det._fit_scores(X, slice(None)), loo, atol=1e-10)
    assert det.offset_ == pytest.approx(np.percentile(loo, 5), abs=1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("normalize", [True, False])
def test_knn_float32_stays_float32(algorithm, normalize):
    X, Q = _data(), _data(n=60, seed=1)
    det = KNN(n_neighbors=5, normalize=normalize, algorithm=algorithm).fit(
        X.astype(np.float32)
    )
    assert det.bank_.dtype == np.float32
    scores = det.score_samples(Q.astype(np.float32))
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, ref_knn(X, Q, 5, normalize), atol=1e-5)
    loo = ref_knn(X, X, 5, normalize, loo=True)
    np.testing.assert_allclose(det._fit_scores(X, slice(None)), loo, atol=1e-5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_duplicate_query_is_at_distance_zero(algorithm, dtype):
    X = _data(n=50).astype(dtype)
    for normalize in (True, False):
        det = KNN(n_neighbors=1, normalize=normalize, algorithm=algorithm).fit(X)
        scores = det.score_samples(X)
        assert np.all(scores == 0)  # exactly, float32 included
        assert np.all(det.score_samples(X + 0.5) < 0)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_leave_one_out_drops_exactly_one_copy(algorithm):
    X = _data(n=30)
    X = np.vstack([X, X[:10], X[:5]])  # rows 0-4 thrice, 5-9 twice, 10-29 once
    det = KNN(n_neighbors=2, algorithm=algorithm).fit(X)
    loo = det._fit_scores(X, slice(None))
    # Row 0-4: two other copies at distance 0 -> 2nd neighbour at 0.
    assert np.all(loo[np.r_[0:5, 30:35, 40:45]] == 0)
    # Row 5-9: one other copy -> 1st neighbour at 0, 2nd one further away.
    assert np.all(loo[np.r_[5:10, 35:40]] < 0)
    np.testing.assert_allclose(loo, ref_knn(X, X, 2, loo=True), atol=1e-12)


def test_numpy_algorithm_merges_top_k_across_bank_blocks(monkeypatch):
    X, Q = _data(n=300), _data(n=70, seed=1)
    expected = KNN(n_neighbors=7, algorithm="numpy").fit(X).score_samples(Q)
    # Blocks of k bank rows (the smallest allowed) and chunks of one query
    # (a working memory of 1 byte).
    monkeypatch.setattr(_knn_search, "_BANK_BLOCK_ROWS", 1)
    calls = []
    searcher = _knn_search._numpy_searcher

    def spy(bank, metric):
        search = searcher(bank, metric)

        def counted(queries, k):
            calls.append(len(queries))
            return search(queries, k)

        return counted

    monkeypatch.setitem(_knn_search._SEARCHERS, "numpy", spy)
    with sklearn.config_context(working_memory=2**-20):
        det = KNN(n_neighbors=7, algorithm="numpy").fit(X)
        np.testing.assert_allclose(det.score_samples(Q), expected, atol=1e-12)
        np.testing.assert_allclose(
            det._fit_scores(X, slice(None)), ref_knn(X, X, 7, loo=True), atol=1e-12
        )
    assert set(calls) == {1}


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("order", ["random", "worst_first"])
def test_numpy_running_top_k_is_exact(monkeypatch, metric, order):
    bank, queries = _data(n=2000, n_features=6), _data(n=40, n_features=6, seed=1)
    exact = cdist(queries, bank) if metric == "l2" else -queries @ bank.T
    if order == "worst_first":
        # Each bank block beats the previous one: the gathering of entries
        # below the running threshold gives way to a full partition.
        perm = np.argsort(-exact[0])
        bank, exact = bank[perm], exact[:, perm]
    calls = {"gathered": 0, "gave_way": 0}
    below = _knn_search._below_threshold

    def spy(*args):
        found = below(*args)
        calls["gave_way" if found is None else "gathered"] += 1
        return found

    monkeypatch.setattr(_knn_search, "_below_threshold", spy)
    monkeypatch.setattr(_knn_search, "_BANK_BLOCK_ROWS", 250)
    values, indices = _knn_search.kneighbors(
        bank, queries, 9, metric=metric, algorithm="numpy"
    )
    expected = np.sort(exact, axis=1)[:, :9]
    got = np.take_along_axis(exact, indices, axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(values, expected if metric == "l2" else -expected)
    assert calls["gave_way" if order == "worst_first" else "gathered"] > 0


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_numpy_search_memory_does_not_grow_with_n_bank_times_n_queries(
    monkeypatch, metric
):
    bank = _data(n=3000, n_features=8).astype(np.float32)
    queries = _data(n=800, n_features=8, seed=1).astype(np.float32)
    # One query-bank matrix would take 3000 * 800 * 4 B = 9.6 MB; blocks of
    # 500 bank rows and a working memory of 0.5 MiB bound the search.
    monkeypatch.setattr(_knn_search, "_BANK_BLOCK_ROWS", 500)
    tracemalloc.start()
    try:
        with sklearn.config_context(working_memory=0.5):
            _knn_search.kneighbors(bank, queries, 5, metric=metric, algorithm="numpy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5e6


@pytest.mark.parametrize("cls", [KNN, NNGuide])
def test_large_fit_sets_score_a_sample_of_rows_for_the_threshold(monkeypatch, cls):
    X = _data(n=200)
    W, b = _head()
    monkeypatch.setattr(cls, "_offset_sample_size", 50)
    det = KNN(n_neighbors=4) if cls is KNN else NNGuide((W, b), n_neighbors=4)
    det.fit(X)
    full = (
        ref_knn(X, X, 4, loo=True) if cls is KNN else ref_nnguide(X, X, W, b, 4, True)
    )
    rows = det._offset_row_indices(len(X))
    assert len(rows) == 50 and len(np.unique(rows)) == 50
    # The sampled rows are scored leave-one-out.
    sample = det._fit_scores(X, rows)
    np.testing.assert_allclose(sample, full[rows], rtol=0, atol=1e-10)
    assert det.offset_ == pytest.approx(np.percentile(sample, 5))


def test_leave_one_out_threshold_is_honest_on_held_out_data():
    X = _data(n=2000, n_features=8, seed=3)
    fit, held_out = X[:1000], X[1000:]
    det = KNN(n_neighbors=10, contamination=0.1).fit(fit)
    assert abs(np.mean(det.predict(held_out) == -1) - 0.1) < 0.04
    # Scored with themselves in the bank, the fit rows look more ID than new
    # rows: predict(X_fit) rejects fewer (why check_outliers_train fails).
    assert np.mean(det.predict(fit) == -1) < 0.08


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_working_memory_chunks_queries_without_changing_scores(algorithm):
    X, Q = _data(n=120), _data(n=50, seed=1)
    W, b = _head()
    expected = [
        KNN(n_neighbors=5, algorithm=algorithm).fit(X).score_samples(Q),
        NNGuide((W, b), n_neighbors=5, algorithm=algorithm).fit(X).score_samples(Q),
    ]
    # About 3 queries per chunk.
    with sklearn.config_context(working_memory=3 * 13 * 12 * 16 / 2**20):
        got = [
            KNN(n_neighbors=5, algorithm=algorithm).fit(X).score_samples(Q),
            NNGuide((W, b), n_neighbors=5, algorithm=algorithm).fit(X).score_samples(Q),
        ]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------ extreme values
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("scale", [1e-200, 1e-20, 1e20, 1e154, 1e300])
def test_knn_without_normalize_keeps_its_scale_at_extreme_magnitudes(algorithm, scale):
    # Found by the edge-input battery: faiss (float32 squares) returned about
    # twice the right score for features around 1e20, every algorithm -inf
    # from about 1e154. The distance scales with the features.
    X, Q = _data(n=60, n_features=5), _data(n=20, n_features=5, seed=1, shift=0.5)
    det = KNN(n_neighbors=5, normalize=False, algorithm=algorithm).fit(X * scale)
    np.testing.assert_allclose(
        det.score_samples(Q * scale), ref_knn(X, Q, 5, False) * scale, rtol=1e-12
    )
    loo = ref_knn(X, X, 5, False, loo=True) * scale
    np.testing.assert_allclose(det._fit_scores(X * scale, slice(None)), loo, rtol=1e-12)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_knn_float32_features_of_1e19(algorithm):
    X = (_data(n=60, n_features=5) * 1e19).astype(np.float32)
    Q = (_data(n=20, n_features=5, seed=1, shift=0.5) * 1e19).astype(np.float32)
    det = KNN(n_neighbors=5, normalize=False, algorithm=algorithm).fit(X)
    scores = det.score_samples(Q)
    assert scores.dtype == np.float32
    expected = ref_knn(X.astype(np.float64), Q.astype(np.float64), 5, False)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_knn_queries_far_beyond_the_bank_get_their_distance(algorithm):
    # Every bank row is at the same distance to float64 rounding; the float32
    # ranking (faiss) must not drop neighbours at overflowing distances.
    X = _data(n=30, n_features=4)
    det = KNN(n_neighbors=3, normalize=False, algorithm=algorithm).fit(X)
    far = np.array(
        [[1e30, 0, 0, 0], [1e300, 1e300, 0, 0], [-1e308, 1e308, 0, 0]], dtype=float
    )
    expected = -np.array([1e30, np.sqrt(2) * 1e300, np.sqrt(2) * 1e308])
    np.testing.assert_allclose(det.score_samples(far), expected, rtol=1e-12)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_knn_distances_beyond_the_float_range_are_refused(algorithm):
    bank = np.array([[3e38, 0.0], [3e38, 1e37], [3e38, 2e37]])
    query = np.array([[-3e38, 0.0]])  # 6e38 away: beyond float32, not float64
    det = KNN(n_neighbors=1, normalize=False, algorithm=algorithm)
    det.fit(bank.astype(np.float32))
    with pytest.raises(ValueError, match="float32 range.*as float64"):
        det.score_samples(query.astype(np.float32))
    np.testing.assert_allclose(det.score_samples(query), [-6e38], rtol=1e-6)
    bank, query = bank * 5e269, query * 5e269  # 3e308 away: beyond float64
    det = KNN(n_neighbors=1, normalize=False, algorithm=algorithm).fit(bank)
    with pytest.raises(ValueError, match="KNN cannot score 1 row.*float64 range"):
        det.score_samples(query)
    with pytest.raises(ValueError, match="float64 range"):
        # Leave-one-out: the 3rd neighbour of each fit row is on the far side.
        KNN(n_neighbors=3, normalize=False, algorithm=algorithm).fit(
            np.vstack([bank, -bank])
        )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_nnguide_float64_features_of_1e19(algorithm):
    X, Q = _data() * 1e19, _data(n=20, seed=1, shift=0.5) * 1e19
    W, b = _head()
    det = NNGuide((W, b), n_neighbors=5, algorithm=algorithm).fit(X)
    np.testing.assert_allclose(
        det.score_samples(Q), ref_nnguide(X, Q, W, b, 5), rtol=1e-10
    )


def test_nnguide_scores_beyond_the_float_range_are_refused():
    # Found by the edge-input battery: float32 features of about 1e19 gave inf
    # (the score grows like |x|^2).
    X = _data() * 1e19
    W, b = _head()
    with pytest.raises(ValueError, match="NNGuide.*float32 range.*as float64"):
        NNGuide((W, b), n_neighbors=5).fit(X.astype(np.float32))
    det = NNGuide((W, b), n_neighbors=5).fit(X)
    with pytest.raises(ValueError, match="NNGuide.*float64 range"):
        det.score_samples(X * 1e281)  # scores of about 1e300 * 1e19
    with pytest.raises(ValueError, match="NNGuide.*float64 range"):
        NNGuide((W, b), n_neighbors=5).fit(X * 1e140)


def test_nnguide_fitted_head_is_named_like_scikit_learn():
    W, b = _head()
    det = NNGuide((W, b), n_neighbors=3).fit(_data())
    np.testing.assert_array_equal(det.coef_, W)
    np.testing.assert_array_equal(det.intercept_, b)


# -------------------------------------------------------- NNGuide vs reference
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("k", [1, 10])
def test_nnguide_matches_float64_reference(algorithm, k):
    X, Q = _data(), _data(n=60, seed=1, shift=0.5)
    W, b = _head()
    det = NNGuide((W, b), n_neighbors=k, algorithm=algorithm).fit(X)
    np.testing.assert_allclose(
        det.score_samples(Q), ref_nnguide(X, Q, W, b, k), rtol=1e-10, atol=1e-10
    )
    loo = ref_nnguide(X, X, W, b, k, loo=True)
    np.testing.assert_allclose(
        det._fit_scores(X, slice(None)), loo, rtol=1e-10, atol=1e-10
    )
    assert det.offset_ == pytest.approx(np.percentile(loo, 5), abs=1e-9)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_nnguide_float32(algorithm):
    X, Q = _data(), _data(n=60, seed=1)
    W, b = _head()
    det = NNGuide((W, b), n_neighbors=5, algorithm=algorithm).fit(X.astype(np.float32))
    assert det.bank_.dtype == np.float32
    scores = det.score_samples(Q.astype(np.float32))
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, ref_nnguide(X, Q, W, b, 5), rtol=1e-5, atol=1e-5)


def test_nnguide_takes_any_head_form():
    torch = pytest.importorskip("torch")
    X, Q = _data(), _data(n=20, seed=1)
    W, b = _head()
    linear = torch.nn.Linear(12, 4)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(W))
        linear.bias.copy_(torch.from_numpy(b))
    expected = NNGuide((W, b), n_neighbors=3).fit(X).score_samples(Q)
    for head in (linear, lambda n_features: (W, b)):
        got = NNGuide(head, n_neighbors=3).fit(X).score_samples(Q)
        np.testing.assert_allclose(got, expected, rtol=1e-6)


# ------------------------------------------------------ cross-check pytorch-ood
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("k", [1, 10])
def test_knn_agrees_with_pytorch_ood(normalize, k):
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, Q = _data(), _data(n=60, seed=1, shift=0.5)
    theirs = detector_module.KNN(None, k=k, normalize=normalize)
    theirs.fit_features(torch.from_numpy(X), torch.zeros(len(X), dtype=torch.long))
    their_scores = theirs.predict_features(torch.from_numpy(Q)).cpu().numpy()
    ours = KNN(n_neighbors=k, normalize=normalize).fit(X).score_samples(Q)
    # Theirs: the k-th distance itself (an outlier score).
    np.testing.assert_allclose(ours, -their_scores, atol=1e-10)


def test_nnguide_agrees_with_pytorch_ood():
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, Q = _data(), _data(n=60, seed=1, shift=0.5)
    W, b = _head()
    head = torch.nn.Linear(12, 4)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(W))
        head.bias.copy_(torch.from_numpy(b))
    theirs = detector_module.NNGuide(None, head=head, k=10)
    labels = torch.zeros(len(X), dtype=torch.long)
    theirs.fit_features(torch.from_numpy(X).float(), labels)
    their_scores = theirs.predict_features(torch.from_numpy(Q).float()).numpy()
    ours = NNGuide((W, b), n_neighbors=10).fit(X).score_samples(Q)
    # pytorch-ood works in float32 and returns -(guidance * energy).
    np.testing.assert_allclose(ours, -their_scores, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", ["KNN", "NNGuide"])
def test_n_neighbors_needs_one_more_fit_row(cls):
    X = _data(n=10)
    det = KNN(n_neighbors=10) if cls == "KNN" else NNGuide(_head(), n_neighbors=10)
    with pytest.raises(
        ValueError, match=r"n_neighbors=10 needs at least n_neighbors \+ 1 = 11"
    ):
        det.fit(X)
    det.set_params(n_neighbors=9).fit(X)  # 10 rows are enough for 9 neighbours


def test_faiss_algorithm_without_faiss(monkeypatch):
    monkeypatch.setattr(_knn_search, "_import_faiss", lambda: None)
    X = _data(n=20)
    with pytest.raises(ImportError, match="faiss"):
        KNN(n_neighbors=3, algorithm="faiss").fit(X)
    assert KNN(n_neighbors=3, algorithm="auto").fit(X).algorithm_ == "numpy"


def test_auto_algorithm_uses_faiss_when_installed():
    expected = "faiss" if HAVE_FAISS else "numpy"
    assert KNN(n_neighbors=3).fit(_data(n=20)).algorithm_ == expected


@pytest.mark.parametrize(
    "params, match",
    [({"n_neighbors": 0}, "n_neighbors"), ({"algorithm": "annoy"}, "algorithm")],
)
def test_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        KNN(**params).fit(_data())


def test_nnguide_head_mismatch():
    with pytest.raises(ValueError, match="head expects 5 input features"):
        NNGuide((np.ones((3, 5)), None), n_neighbors=2).fit(_data())


def test_wrong_number_of_features_at_score_time():
    for det in (
        KNN(n_neighbors=3).fit(_data()),
        NNGuide(_head(), n_neighbors=3).fit(_data()),
    ):
        with pytest.raises(ValueError, match="features"):
            det.score_samples(_data(n_features=11))


def test_ood_rows_are_ignored():
    X, X_ood = _data(n=50), _data(n=10, seed=2, shift=3.0)
    y = np.r_[np.zeros(50, int), -np.ones(10, int)]
    for make in (lambda: KNN(n_neighbors=3), lambda: NNGuide(_head(), n_neighbors=3)):
        with_ood = make().fit(np.vstack([X, X_ood]), y)
        without = make().fit(X)
        assert with_ood.offset_ == without.offset_
        np.testing.assert_array_equal(
            with_ood.score_samples(X_ood), without.score_samples(X_ood)
        )


# ------------------------------------------------------- hypothesis properties
# Small grids make duplicate rows (and zero rows) common; distinct rows stay
# far apart compared with rounding, so the top-k is exact.
grid = st.integers(-2, 2).map(float)
fine_grid = st.integers(-40, 40).map(lambda v: v / 4)


@st.composite
def point_sets(draw, elements=None, max_rows=14):
    n = draw(st.integers(3, max_rows))
    d = draw(st.integers(1, 4))
    if elements is None:
        elements = st.floats(-10, 10, allow_nan=False, width=64)
    return draw(arrays(np.float64, (n, d), elements=elements))


def _rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))  # a random orthogonal matrix


@given(point_sets(), st.integers(0, 2**32 - 1), st.data())
def test_knn_invariant_to_rotation_and_translation_without_normalize(X, seed, data):
    n, d = X.shape
    k = data.draw(st.integers(1, n - 1))
    Q = np.random.default_rng(seed).normal(scale=5.0, size=(5, d))
    R, t = _rotation(d, seed), np.random.default_rng(seed).normal(scale=5, size=d)
    det = KNN(n_neighbors=k, normalize=False, algorithm="numpy").fit(X)
    moved = KNN(n_neighbors=k, normalize=False, algorithm="numpy").fit(X @ R.T + t)
    np.testing.assert_allclose(
        moved.score_samples(Q @ R.T + t), det.score_samples(Q), atol=1e-9
    )
    assert moved.offset_ == pytest.approx(det.offset_, abs=1e-9)


# Normalising keeps only a row's direction, which rounding destroys for rows
# near the subnormal range (their rotated entries are quantised to ~5e-324):
# there the property cannot hold, so such entries are drawn as 0.
directional = st.floats(-10, 10, allow_nan=False, width=64).map(
    lambda v: 0.0 if abs(v) < 1e-100 else v
)


@given(point_sets(elements=directional), st.integers(0, 2**32 - 1), st.data())
def test_knn_invariant_to_rotation_with_normalize(X, seed, data):
    n, d = X.shape
    k = data.draw(st.integers(1, n - 1))
    Q = np.random.default_rng(seed).normal(size=(5, d))
    R = _rotation(d, seed)
    det = KNN(n_neighbors=k, algorithm="numpy").fit(X)
    moved = KNN(n_neighbors=k, algorithm="numpy").fit(X @ R.T)
    np.testing.assert_allclose(
        moved.score_samples(Q @ R.T), det.score_samples(Q), atol=1e-9
    )
    assert moved.offset_ == pytest.approx(det.offset_, abs=1e-9)


@given(
    point_sets(elements=fine_grid),
    point_sets(),
    st.booleans(),
    st.sampled_from(["numpy", "sklearn"]),
)
def test_fit_points_are_maximal_for_k1(X, other, normalize, algorithm):
    other = np.resize(other, (len(other), X.shape[1]))
    det = KNN(n_neighbors=1, normalize=normalize, algorithm=algorithm).fit(X)
    fit_scores = det.score_samples(X)
    assert np.all(fit_scores == 0)
    assert np.all(det.score_samples(other) <= fit_scores.min())


@given(
    point_sets(elements=grid),
    st.booleans(),
    st.sampled_from(["numpy", "sklearn"]),
    st.data(),
)
def test_knn_leave_one_out_equals_brute_force(X, normalize, algorithm, data):
    k = data.draw(st.integers(1, len(X) - 1))
    det = KNN(n_neighbors=k, normalize=normalize, algorithm=algorithm).fit(X)
    np.testing.assert_allclose(
        det._fit_scores(X, slice(None)),
        ref_knn(X, X, k, normalize, loo=True),
        atol=1e-12,
    )


@given(point_sets(elements=directional), st.integers(0, 2**32 - 1), st.data())
def test_nnguide_invariant_to_rotating_features_and_head(X, seed, data):
    n, d = X.shape
    k = data.draw(st.integers(1, n - 1))
    rng = np.random.default_rng(seed)
    W, b = rng.normal(size=(3, d)), rng.normal(size=3)
    Q, R = rng.normal(size=(5, d)), _rotation(d, seed)
    det = NNGuide((W, b), n_neighbors=k, algorithm="numpy").fit(X)
    # Rotated features with the head rotated alike give the same logits.
    moved = NNGuide((W @ R.T, b), n_neighbors=k, algorithm="numpy").fit(X @ R.T)
    np.testing.assert_allclose(
        moved.score_samples(Q @ R.T), det.score_samples(Q), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        moved._fit_scores(X @ R.T, slice(None)),
        ref_nnguide(X, X, W, b, k, loo=True),
        rtol=1e-9,
        atol=1e-9,
    )


@given(
    point_sets(),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["numpy", "sklearn"] + (["faiss"] if HAVE_FAISS else [])),
    st.data(),
)
def test_knn_score_falls_along_a_ray_leaving_the_bank(X, seed, algorithm, data):
    """Beyond the bank's radius R around the ray's origin c, every distance
    ||c + t v - b|| grows with t (its derivative is at least (t - R) / (t + R)),
    so the k-th one does and the score falls at every step."""
    n, d = X.shape
    k = data.draw(st.integers(1, n - 1))
    rng = np.random.default_rng(seed)
    c = X[rng.integers(n)] + rng.normal(size=d)
    v = rng.normal(size=d)
    v /= np.linalg.norm(v)
    radius = max(np.linalg.norm(X - c, axis=1).max(), 1.0)
    steps = radius * np.array([1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0])
    det = KNN(n_neighbors=k, normalize=False, algorithm=algorithm).fit(X)
    scores = det.score_samples(c + steps[:, None] * v)
    assert np.all(np.diff(scores) < 0)


@pytest.mark.parametrize("magnitude", [1e-160, 1e160])
def test_normalisation_of_tiny_and_huge_rows_gives_unit_rows(magnitude):
    # Found by hypothesis: squaring 1e-160 underflows to a subnormal number.
    X = np.array([[1.0, 1.0], [1.0, 2.0], [3.0, -1.0]]) * magnitude
    det = KNN(n_neighbors=1, algorithm="numpy").fit(X)
    np.testing.assert_allclose(np.linalg.norm(det.bank_, axis=1), 1.0, rtol=1e-12)
