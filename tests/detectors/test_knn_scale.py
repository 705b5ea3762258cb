"""Banks of millions: approximate search (faiss IVF, HNSW) and memory-mapped
banks searched block by block, for KNN and NNGuide."""

import pickle
import tracemalloc

import numpy as np
import pytest
import sklearn
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_ood.detectors import _knn_search
from sklearn_ood.detectors._knn_search import ScaledRows, kneighbors, normalize_rows
from sklearn_ood.detectors._neighbors import KNN, NNGuide

HAVE_FAISS = _knn_search._import_faiss() is not None
needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="needs faiss")
APPROXIMATE = ["faiss-ivf", "faiss-hnsw"]


def _clustered(n=3000, n_features=32, n_clusters=10, seed=0, dtype=np.float32):
    """Rows of a few clusters, each a centre plus a low-dimensional spread."""
    rng = np.random.default_rng(seed)
    centres = 3 * np.random.default_rng(99).normal(size=(n_clusters, n_features))
    bases = np.random.default_rng(98).normal(size=(n_clusters, n_features, 4))
    labels = rng.integers(0, n_clusters, n)
    spread = np.einsum("ndk,nk->nd", bases[labels], rng.normal(size=(n, 4)))
    rows = centres[labels] + spread + 0.1 * rng.normal(size=(n, n_features))
    return rows.astype(dtype)


def _head(n_features=32, n_classes=5, seed=1):
    rng = np.random.default_rng(seed)
    return 0.3 * rng.normal(size=(n_classes, n_features)), rng.normal(size=n_classes)


def _recall(found, exact):
    k = exact.shape[1]
    return np.mean([len(set(a) & set(b)) for a, b in zip(found, exact)]) / k


# ------------------------------------------------------ approximate search
@needs_faiss
@pytest.mark.parametrize("algorithm", APPROXIMATE)
def test_knn_approximate_recall_and_scores(algorithm):
    X, Q = _clustered(), _clustered(n=400, seed=1)
    k = 10
    exact = KNN(n_neighbors=k, algorithm="numpy").fit(X)
    approx = KNN(n_neighbors=k, algorithm=algorithm, random_state=0).fit(X)
    queries = normalize_rows(Q)
    _, exact_idx = kneighbors(exact.bank_, queries, k)
    _, found = kneighbors(approx.bank_, queries, k, index=approx.index_)
    assert _recall(found, exact_idx) >= 0.9
    s_exact, s_approx = exact.score_samples(Q), approx.score_samples(Q)
    # The distances of the rows found are exact, so a missed neighbour can
    # only push the k-th one further: the score never rises.
    assert np.all(s_approx <= s_exact + 1e-6)
    assert np.median(s_exact - s_approx) < 1e-3
    assert np.abs(s_exact - s_approx).max() < 0.05
    assert approx.offset_ == pytest.approx(exact.offset_, abs=0.01)


@needs_faiss
@pytest.mark.parametrize("algorithm", APPROXIMATE)
def test_nnguide_approximate_close_to_exact(algorithm):
    X, Q = _clustered(), _clustered(n=400, seed=1)
    head = _head()
    exact = NNGuide(head, n_neighbors=10, algorithm="numpy").fit(X)
    approx = NNGuide(head, n_neighbors=10, algorithm=algorithm, random_state=0)
    approx.fit(X)
    queries = normalize_rows(Q)
    _, exact_idx = kneighbors(exact.bank_, queries, 10, metric="ip")
    _, found = kneighbors(approx.bank_, queries, 10, metric="ip", index=approx.index_)
    assert _recall(found, exact_idx) >= 0.9
    s_exact, s_approx = exact.score_samples(Q), approx.score_samples(Q)
    scale = np.abs(s_exact).max()
    assert np.median(np.abs(s_exact - s_approx)) < 1e-3 * scale
    assert approx.offset_ == pytest.approx(exact.offset_, rel=0.05)


@needs_faiss
@pytest.mark.parametrize("algorithm", APPROXIMATE)
def test_approximate_leave_one_out_drops_self(algorithm):
    X = _clustered(n=1000)
    det = KNN(n_neighbors=1, algorithm=algorithm, random_state=0).fit(X)
    loo = det._fit_scores(X, slice(None))
    assert np.all(loo < 0)  # the row itself (at distance 0) never counts
    exact = KNN(n_neighbors=1, algorithm="numpy").fit(X)
    exact_loo = exact._fit_scores(X, slice(None))
    assert np.all(loo <= exact_loo + 1e-6)
    assert np.mean(loo == exact_loo) >= 0.9
    np.testing.assert_array_equal(det.score_samples(X), 0.0)  # self found


@needs_faiss
def test_ivf_is_seeded_and_takes_its_params():
    X, Q = _clustered(), _clustered(n=200, seed=1)
    params = dict(nlist=20, nprobe=3)
    fits = [
        KNN(algorithm="faiss-ivf", algorithm_params=params, random_state=7).fit(X)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(fits[0].score_samples(Q), fits[1].score_samples(Q))
    assert (fits[0].index_.nlist_, fits[0].index_.nprobe_) == (20, 3)
    default = KNN(algorithm="faiss-ivf", random_state=0).fit(X).index_
    assert default.nlist_ == round(np.sqrt(len(X)))
    assert default.nprobe_ == max(8, default.nlist_ // 64)


@needs_faiss
def test_ivf_too_few_candidates_falls_back_to_exact():
    # One list probed out of many holds fewer than k + 9 rows: those queries
    # are searched exactly instead of returning faiss's -1 rows.
    X, Q = _clustered(n=600), _clustered(n=50, seed=1)
    det = KNN(
        n_neighbors=20,
        algorithm="faiss-ivf",
        algorithm_params=dict(nlist=100, nprobe=1),
        random_state=0,
    ).fit(X)
    exact = KNN(n_neighbors=20, algorithm="numpy").fit(X)
    scores = det.score_samples(Q)
    assert np.all(np.isfinite(scores))
    assert np.all(scores <= exact.score_samples(Q) + 1e-6)


@needs_faiss
@pytest.mark.parametrize("algorithm", APPROXIMATE)
def test_approximate_pickle_round_trip_and_size(algorithm):
    X, Q = _clustered(n=4000, n_features=32), _clustered(n=100, seed=1)
    det = KNN(n_neighbors=5, algorithm=algorithm, random_state=0).fit(X)
    blob = pickle.dumps(det)
    loaded = pickle.loads(blob)
    np.testing.assert_array_equal(loaded.score_samples(Q), det.score_samples(Q))
    # The pickle is the bank, the index's float32 copy of it, and the IVF
    # centroids or the HNSW links (about 2 * M int32 per row, M = 32).
    n, d = X.shape
    copy = n * d * 4
    extra = det.index_.nlist_ * d * 4 if algorithm == "faiss-ivf" else n * 2 * 32 * 4
    assert det.bank_.nbytes + copy <= len(blob)
    assert len(blob) <= 1.1 * (det.bank_.nbytes + copy + extra) + 10_000


@needs_faiss
def test_hnsw_defaults_and_beam(monkeypatch):
    X = _clustered(n=500)
    det = KNN(n_neighbors=50, algorithm="faiss-hnsw").fit(X)
    index = det.index_
    assert (index.M_, index.ef_construction_, index.ef_search_) == (32, 160, None)
    assert index._faiss_index().hnsw.efConstruction == 160
    # Default beam: max(256, 2 * candidates); candidates = k + 8 to score.
    assert index.ef_search(58) == 256
    assert index.ef_search(128) == 256
    assert index.ef_search(1008) == 2016
    faiss = _knn_search._import_faiss()
    seen, real = [], faiss.SearchParametersHNSW

    def spy(**kwargs):
        seen.append(kwargs["efSearch"])
        return real(**kwargs)

    monkeypatch.setattr(faiss, "SearchParametersHNSW", spy)
    det.score_samples(X[:3])
    assert seen == [256]
    params = {"M": 8, "efConstruction": 20, "efSearch": 64}
    given = KNN(5, algorithm="faiss-hnsw", algorithm_params=params).fit(X).index_
    assert (given.M_, given.ef_construction_, given.ef_search_) == (8, 20, 64)
    assert given._faiss_index().hnsw.efConstruction == 20
    # A given efSearch is still raised to the candidates the beam must hold.
    assert given.ef_search(13) == 64 and given.ef_search(100) == 100


@needs_faiss
def test_hnsw_defaults_reach_clusters():
    # Many tight clusters: a graph built with faiss's former defaults
    # (efConstruction=40, efSearch=128) routes some queries into the wrong
    # cluster (recall@50 = 0.998 here, 0.87 on the 1M-row benchmark); the
    # defaults find the neighbours of (nearly) every query.
    X = _clustered(n=10_000, n_clusters=40)
    Q = _clustered(n=500, n_clusters=40, seed=1)
    k = 50
    det = KNN(n_neighbors=k, algorithm="faiss-hnsw", contamination=None).fit(X)
    exact = KNN(n_neighbors=k, algorithm="numpy", contamination=None).fit(X)
    queries = normalize_rows(Q)
    _, exact_idx = kneighbors(exact.bank_, queries, k)
    _, found = kneighbors(det.bank_, queries, k, index=det.index_)
    assert _recall(found, exact_idx) >= 0.9995
    np.testing.assert_allclose(
        det.score_samples(Q), exact.score_samples(Q), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize(
    "algorithm, params, match",
    [
        ("faiss-ivf", {"nlists": 4}, "unknown \\['nlists'\\]"),
        ("faiss-hnsw", {"nprobe": 4}, "unknown \\['nprobe'\\]"),
        ("numpy", {"nprobe": 4}, "takes none"),
        ("faiss-ivf", {"nprobe": 0}, "int >= 1"),
        ("faiss-ivf", {"nlist": 2.5}, "int >= 1"),
        ("faiss-hnsw", {"M": 1}, "int >= 2"),
        ("faiss-hnsw", {"efSearch": True}, "int >= 1"),
    ],
)
def test_algorithm_params_are_validated(algorithm, params, match):
    X = _clustered(n=200)
    with pytest.raises(ValueError, match=match):
        KNN(n_neighbors=5, algorithm=algorithm, algorithm_params=params).fit(X)
    with pytest.raises(ValueError, match=match):
        NNGuide(_head(), algorithm=algorithm, algorithm_params=params).fit(X)


@needs_faiss
def test_ivf_nlist_beyond_the_bank_is_refused():
    X = _clustered(n=100)
    with pytest.raises(ValueError, match="nlist.*=500 needs at least"):
        KNN(5, algorithm="faiss-ivf", algorithm_params={"nlist": 500}).fit(X)


def test_unknown_algorithm_and_params_type_are_refused():
    X = _clustered(n=100)
    with pytest.raises(InvalidParameterError):
        KNN(algorithm="faiss-pq").fit(X)
    with pytest.raises(InvalidParameterError):
        KNN(algorithm="faiss-ivf", algorithm_params=[("nlist", 4)]).fit(X)


@pytest.mark.parametrize("algorithm", APPROXIMATE)
def test_approximate_without_faiss_raises_import_error(monkeypatch, algorithm):
    monkeypatch.setattr(_knn_search, "_import_faiss", lambda: None)
    X = _clustered(n=100)
    for det in (KNN(5, algorithm=algorithm), NNGuide(_head(), algorithm=algorithm)):
        with pytest.raises(ImportError, match="pip install faiss-cpu"):
            det.fit(X)


@needs_faiss
def test_unpickled_index_without_faiss_raises_import_error(monkeypatch):
    X = _clustered(n=300)
    blob = pickle.dumps(KNN(5, algorithm="faiss-hnsw").fit(X))
    monkeypatch.setattr(_knn_search, "_import_faiss", lambda: None)
    det = pickle.loads(blob)  # loading needs no faiss; searching does
    with pytest.raises(ImportError, match="faiss-hnsw"):
        det.score_samples(X[:5])


# ------------------------------------------------------ memory-mapped banks
def _memmap(tmp_path, X, name="bank.dat"):
    mapped = np.memmap(tmp_path / name, dtype=X.dtype, mode="w+", shape=X.shape)
    mapped[:] = X
    mapped.flush()
    return np.memmap(tmp_path / name, dtype=X.dtype, mode="r", shape=X.shape)


EXACT = [
    "numpy",
    "sklearn",
    pytest.param("faiss", marks=needs_faiss),
]


@pytest.mark.parametrize("algorithm", EXACT)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("normalize", [True, False])
def test_memmap_knn_equals_in_memory(tmp_path, algorithm, dtype, normalize):
    X, Q = _clustered(n=3000, dtype=dtype), _clustered(n=300, seed=1, dtype=dtype)
    mapped = _memmap(tmp_path, X)
    ref = KNN(n_neighbors=7, normalize=normalize, algorithm=algorithm).fit(X)
    # A small working memory: the bank is searched in several blocks.
    with sklearn.config_context(working_memory=0.1):
        det = KNN(n_neighbors=7, normalize=normalize, algorithm=algorithm)
        det.fit(mapped)
        scores = det.score_samples(Q)
    if normalize:
        assert isinstance(det.bank_, ScaledRows)
        np.testing.assert_array_equal(det.bank_[:], ref.bank_)
    else:
        assert _knn_search.is_memory_mapped(det.bank_)
    np.testing.assert_array_equal(scores, ref.score_samples(Q))
    assert det.offset_ == ref.offset_


@pytest.mark.parametrize("algorithm", EXACT)
def test_memmap_nnguide_equals_in_memory(tmp_path, algorithm):
    X, Q = _clustered(n=3000), _clustered(n=300, seed=1)
    head = _head()
    ref = NNGuide(head, n_neighbors=7, algorithm=algorithm).fit(X)
    with sklearn.config_context(working_memory=0.1):
        det = NNGuide(head, n_neighbors=7, algorithm=algorithm)
        det.fit(_memmap(tmp_path, X))
        scores = det.score_samples(Q)
    np.testing.assert_array_equal(det.bank_[:], ref.bank_)
    np.testing.assert_array_equal(scores, ref.score_samples(Q))
    assert det.offset_ == ref.offset_


def test_scaled_rows_index_like_the_array():
    X = _clustered(n=50, dtype=np.float64) * 1e-200  # rescaled before the norm
    scale = np.linspace(-2, 3, 50)
    rows = ScaledRows(X, scale=scale)
    full = normalize_rows(X, scale=scale)
    np.testing.assert_array_equal(rows[5:17], full[5:17])
    idx = np.array([[3, 1], [49, 0]])
    np.testing.assert_array_equal(rows[idx], full[idx])
    np.testing.assert_array_equal(np.asarray(rows), full)
    assert rows.shape == X.shape and rows.dtype == X.dtype and len(rows) == 50


@pytest.mark.parametrize("detector", ["KNN", "NNGuide"])
def test_memmap_bank_is_not_loaded(tmp_path, detector):
    # 40,000 x 64 float32: a 10 MiB bank; fit and score in 0.5 MiB blocks
    # must stay well below it (a normalised copy alone would be 10 MiB).
    X = _clustered(n=40_000, n_features=64)
    mapped = _memmap(tmp_path, X)
    Q = _clustered(n=200, n_features=64, seed=1)
    if detector == "KNN":
        det = KNN(n_neighbors=10, algorithm="numpy", contamination=None)
    else:
        head = _head(n_features=64)
        det = NNGuide(head, n_neighbors=10, algorithm="numpy", contamination=None)
    del X
    with sklearn.config_context(working_memory=0.5):
        tracemalloc.start()
        try:
            det.fit(mapped)
            det.score_samples(Q)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < mapped.nbytes / 4, (peak, mapped.nbytes)
