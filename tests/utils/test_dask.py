"""Merging partial statistics, and fit / score on Dask arrays on a local cluster.

The merge tests need no dask; the others run on a ``distributed.LocalCluster``
with two worker processes and are skipped when dask is not installed.
"""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from _helpers import RandomLinearHead
from test_common import DETECTOR_KWARGS

from sklearn_ood import all_detectors
from sklearn_ood.base import PartialFitMixin, _is_stateless
from sklearn_ood.detectors import (
    KNN,
    SHE,
    Energy,
    Mahalanobis,
    MultiMahalanobis,
    NNGuide,
    TemperatureScaling,
    ViM,
    fDBD,
)
from sklearn_ood.exceptions import NoThresholdError

STREAMING = [
    (name, cls)
    for name, cls in all_detectors(include_torch=False)
    if issubclass(cls, PartialFitMixin)
]
NEIGHBORS = [("KNN", KNN), ("NNGuide", NNGuide)]
# ViM's fit matches residual_scale_ on every fit row under the final subspace,
# which a merge of sums cannot revisit: the merge tests fix it.
MERGE_KWARGS = {"ViM": {"residual_scale": 1.0}}


def _data(n_samples, seed, n_features=6):
    """Non-negative rows whose largest column is the label (3 classes)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % 3
    X = np.abs(
        3.0 * np.eye(3, n_features)[y] + rng.normal(size=(n_samples, n_features))
    )
    return X, y


def _make(name, cls, **extra):
    return cls(**{**DETECTOR_KWARGS.get(name, {}), **extra})


def _assert_scores_close(actual, expected):
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale)


# -------------------------------------------------------------------- merge
def _splits():
    X, y = _data(60, seed=0)
    by_class = np.argsort(y, kind="stable")  # A: classes 0 and 1, B: 1 and 2
    return {
        "halves": (X[:30], y[:30], X[30:], y[30:]),
        "uneven": (X[:7], y[:7], X[7:], y[7:]),
        "classes-apart": (X[by_class[:33]], y[by_class[:33]], X[by_class[33:]],
                          y[by_class[33:]]),
    }  # fmt: skip


@pytest.mark.parametrize("split", list(_splits()))
@pytest.mark.parametrize("name, cls", STREAMING, ids=[n for n, _ in STREAMING])
def test_merged_partial_fits_equal_one_fit(name, cls, split):
    X_a, y_a, X_b, y_b = _splits()[split]
    X_test, _ = _data(40, seed=5)
    kwargs = MERGE_KWARGS.get(name, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SHE's class without a pattern
        merged = _make(name, cls, **kwargs).fit(X_a, y_a)
        other = _make(name, cls, **kwargs).fit(X_b, y_b)
        other_before = pickle.dumps(other.__dict__)
        merged._merge_stats(other)
        merged._finalize_stats()
        whole = _make(name, cls, **kwargs).fit(np.vstack([X_a, X_b]), np.r_[y_a, y_b])
    assert pickle.dumps(other.__dict__) == other_before  # other is unchanged
    assert merged.n_samples_seen_ == whole.n_samples_seen_
    _assert_scores_close(merged.score_samples(X_test), whole.score_samples(X_test))
    for attr in ("means_", "covariance_", "patterns_", "mean_", "templates_"):
        if hasattr(whole, attr):
            _assert_scores_close(getattr(merged, attr), getattr(whole, attr))


def test_merge_of_class_stats_is_the_pairwise_update():
    from sklearn_ood.detectors._gaussian import ClassStats

    X, y = _data(50, seed=1)
    a = ClassStats(6, per_class=True).with_rows(X[:20], y[:20])
    b = ClassStats(6, per_class=True).with_rows(X[20:], y[20:])
    whole = ClassStats(6, per_class=True).with_rows(X, y)
    merged = a.merged(b)
    for attr in ("counts", "means", "within", "class_scatter"):
        _assert_scores_close(getattr(merged, attr), getattr(whole, attr))
    assert a.counts.sum() == 20  # a is unchanged


def test_merge_refuses_overflowing_sums():
    X = np.full((2, 4), 5e307)  # each sum is finite, their total is not
    a = fDBD(RandomLinearHead(), contamination=None).fit(X)
    b = fDBD(RandomLinearHead(), contamination=None).fit(X)
    with pytest.raises(ValueError, match="overflowed float64"):
        a._merge_stats(b)


# --------------------------------------------------------------------- dask
@pytest.fixture(scope="module")
def client():
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        with distributed.Client(cluster) as dask_client:
            yield dask_client
        cluster.close()


def _dask_data(n_samples=900, seed=0, chunks=(250, 250, 150, 250), dtype=np.float64):
    import dask.array as da

    X, y = _data(n_samples, seed)
    X = X.astype(dtype)
    y[::11] = -1  # OOD rows, dropped by the fit
    return X, y, da.from_array(X, chunks=(chunks, 6)), da.from_array(y, chunks=chunks)


STATELESS = [
    (name, cls)
    for name, cls in all_detectors(include_torch=False)
    if _is_stateless(_make(name, cls))
]
FITTED_ON_DASK = [(n, c) for n, c in STREAMING if n != "MultiMahalanobis"] + [
    ("MultiMahalanobis", MultiMahalanobis),
    *NEIGHBORS,
    *STATELESS,
]


@pytest.mark.parametrize(
    "name, cls", FITTED_ON_DASK, ids=[n for n, _ in FITTED_ON_DASK]
)
def test_fit_on_dask_equals_the_in_memory_fit(client, name, cls):
    X, y, X_d, y_d = _dask_data()
    X_test, _ = _data(50, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _make(name, cls).fit(X, y)
        det = _make(name, cls).fit(X_d, y_d)
    assert abs(det.offset_ - expected.offset_) <= 1e-10 * max(1, abs(expected.offset_))
    _assert_scores_close(det.score_samples(X_test), expected.score_samples(X_test))
    assert det.n_features_in_ == 6
    if hasattr(expected, "classes_"):
        np.testing.assert_array_equal(det.classes_, expected.classes_)
    if (name, cls) not in NEIGHBORS:  # a plain in-memory estimator
        import dask

        assert not any(dask.is_dask_collection(v) for v in vars(det).values())
        loaded = pickle.loads(pickle.dumps(det))
        _assert_scores_close(
            loaded.score_samples(X_test), expected.score_samples(X_test)
        )


@pytest.mark.parametrize("det", [Mahalanobis(), KNN(n_neighbors=3, algorithm="numpy")],
                         ids=["Mahalanobis", "KNN"])  # fmt: skip
def test_offset_from_the_same_sample_of_a_large_fit_set(client, det):
    import dask.array as da

    # Above 10,000 ID rows offset_ comes from a seeded sample, gathered by
    # global index from the cluster.
    X, y = _data(10_600, seed=3, n_features=4)
    y[::7] = -1
    det_d = pickle.loads(pickle.dumps(det))
    expected = det.fit(X, y)
    det_d.fit(da.from_array(X, chunks=(3000, 4)), da.from_array(y, chunks=3000))
    assert abs(det_d.offset_ - expected.offset_) <= 1e-10 * max(
        1, abs(expected.offset_)
    )


@pytest.mark.parametrize(
    "name, cls", [("Mahalanobis", Mahalanobis), *NEIGHBORS, ("Energy", Energy)]
)
def test_scores_of_a_dask_array_are_a_dask_array(client, name, cls):
    import dask.array as da

    X, y, X_d, y_d = _dask_data(dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = _make(name, cls).fit(X, y if name != "Energy" else None)
        # Column chunks are joined first.
        queries = da.from_array(X[:300], chunks=((100,) * 3, (3, 3)))
        for method in ("score_samples", "decision_function", "predict"):
            out = getattr(det, method)(queries)
            assert isinstance(out, da.Array)
            expected = getattr(det, method)(X[:300])
            computed = out.compute()
            assert computed.dtype == expected.dtype
            _assert_scores_close(computed, expected)


def test_scores_of_a_sharded_bank_on_dask_queries(client):
    import dask.array as da

    X, y, X_d, y_d = _dask_data()
    X_test, _ = _data(120, seed=9)
    for name, cls in NEIGHBORS:
        expected = _make(name, cls).fit(X, y)
        det = _make(name, cls).fit(X_d, y_d)
        # The bank stays on the cluster, one shard per block of ID rows.
        assert isinstance(det.bank_, da.Array)
        assert det.bank_.numblocks[0] == X_d.numblocks[0]
        scores = det.score_samples(da.from_array(X_test, chunks=50))
        _assert_scores_close(scores.compute(), expected.score_samples(X_test))
        predicted = det.predict(da.from_array(X_test, chunks=50)).compute()
        np.testing.assert_array_equal(predicted, expected.predict(X_test))


def test_pickling_a_sharded_bank_gathers_it(client):
    X, y, X_d, y_d = _dask_data()
    X_test, _ = _data(30, seed=4)
    det = KNN(n_neighbors=5, normalize=False).fit(X_d, y_d)
    loaded = pickle.loads(pickle.dumps(det))
    assert type(loaded.bank_) is np.ndarray
    expected = KNN(n_neighbors=5, normalize=False).fit(X, y)
    np.testing.assert_array_equal(loaded.bank_, expected.bank_)
    _assert_scores_close(loaded.score_samples(X_test), expected.score_samples(X_test))
    assert det.bank_ is not loaded.bank_  # the fitted detector keeps its shards


def test_fit_on_dask_without_labels_and_a_large_scale(client):
    import dask.array as da

    X, _ = _data(500, seed=6)
    X *= 1e30  # KNN(normalize=False) rescales its bank by one power of two
    for det in (
        KNN(n_neighbors=4, normalize=False),
        Mahalanobis(),
        ViM(RandomLinearHead()),
    ):
        expected = pickle.loads(pickle.dumps(det)).fit(X)
        det.fit(da.from_array(X, chunks=120))
        assert abs(det.offset_ - expected.offset_) <= 1e-10 * abs(expected.offset_)
        if hasattr(expected, "classes_"):  # one class, [0]
            np.testing.assert_array_equal(det.classes_, expected.classes_)


def test_validation_errors_are_those_of_an_in_memory_fit(client):
    import dask.array as da

    X, y, X_d, y_d = _dask_data()
    X_nan = X.copy()
    X_nan[800, 2] = np.nan  # in the last block
    for det in (Mahalanobis(), KNN(n_neighbors=3), Energy()):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            det.fit(da.from_array(X_nan, chunks=250), y_d)
        with pytest.raises(ValueError, match="marks every row as out-of-distribution"):
            det.fit(X_d, da.full(len(X), -1, chunks=250))
    det = Mahalanobis(contamination=None).fit(X_d, y_d)
    with pytest.raises(ValueError, match="X has 5 features, but Mahalanobis"):
        det.score_samples(X_d[:, :5])
    with pytest.raises(NoThresholdError):
        det.predict(X_d)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        det.score_samples(da.from_array(X_nan, chunks=250)).compute()
    with pytest.raises(TypeError, match="cannot be fitted on a dask array"):
        TemperatureScaling().fit(X_d, y_d)
    with pytest.raises(ValueError, match="at least 2 classes"):
        Energy().fit(X_d[:, :1])  # the checks of its in-memory fit
    with pytest.raises(ValueError, match="needs in-distribution rows"):
        MultiMahalanobis(layer_weights="learn").fit(X_d, da.zeros(len(X), chunks=250))
    with pytest.raises(ValueError, match="builds one index"):
        KNN(algorithm="faiss-hnsw").fit(X_d)


def test_learned_layer_weights_on_dask_equal_the_in_memory_ones(client):
    X, y, X_d, y_d = _dask_data()
    X_test, _ = _data(50, seed=7)
    kwargs = dict(groups=[3, 3], layer_weights="learn")
    expected = MultiMahalanobis(**kwargs).fit(X, y)
    det = MultiMahalanobis(**kwargs).fit(X_d, y_d)
    np.testing.assert_allclose(det.layer_weights_, expected.layer_weights_, rtol=1e-6)
    assert det.offset_ == pytest.approx(expected.offset_, rel=1e-6)
    np.testing.assert_allclose(
        det.score_samples(X_test), expected.score_samples(X_test), rtol=1e-6
    )


def test_fit_on_dask_continues_with_partial_fit(client):
    X, y, X_d, y_d = _dask_data()
    X_next, y_next = _data(60, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head = RandomLinearHead()
        expected = SHE(head).fit(X, y).partial_fit(X_next, y_next)
        det = SHE(head).fit(X_d, y_d).partial_fit(X_next, y_next)
    assert det.offset_ == pytest.approx(expected.offset_, rel=1e-10)


def test_dask_is_imported_only_for_dask_input():
    code = (
        "import sys, numpy as np\n"
        "from sklearn_ood.detectors import KNN, Mahalanobis\n"
        "X = np.random.default_rng(0).normal(size=(50, 3))\n"
        "Mahalanobis().fit(X).predict(X); KNN(n_neighbors=3).fit(X).predict(X)\n"
        "import pickle; pickle.dumps(Mahalanobis().fit(X))\n"
        "assert 'dask' not in sys.modules, 'dask was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
