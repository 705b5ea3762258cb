"""MultiMahalanobis (Lee et al. 2018 feature ensemble) against the formula."""

import pickle

import numpy as np
import pytest
from _helpers import streamed_offset
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sklearn_ood.detectors._multi_mahalanobis import MultiMahalanobis


def _layers(n=200, widths=(3, 4), n_classes=3, seed=0, n_test=25):
    """Features of several 'layers' side by side, one label vector."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    blocks, tests = [], []
    for width in widths:
        mix = np.eye(width) + 0.3 * rng.normal(size=(width, width))
        centers = 3.0 * rng.normal(size=(n_classes, width))
        blocks.append(rng.normal(size=(n, width)) @ mix + centers[y])
        tests.append(2.0 * rng.normal(size=(n_test, width)) @ mix)
    return np.hstack(blocks), y, np.hstack(tests)


def ref_layer_score(X, y, T):
    """-min_k (t - mu_k)^T Sigma^{-1} (t - mu_k), tied Sigma divided by N."""
    classes = np.unique(y)
    means = np.array([X[y == k].mean(axis=0) for k in classes])
    centred = X - means[np.searchsorted(classes, y)]
    VI = np.linalg.inv(centred.T @ centred / len(X))
    diffs = T[:, None, :] - means[None, :, :]
    return -np.einsum("nkd,de,nke->nk", diffs, VI, diffs).min(axis=1)


def test_matches_weighted_sum_of_layer_references():
    X, y, T = _layers()
    weights = np.array([0.7, -1.5])
    det = MultiMahalanobis(groups=[3, 4], layer_weights=weights).fit(X, y)
    layers = np.column_stack(
        [ref_layer_score(X[:, :3], y, T[:, :3]), ref_layer_score(X[:, 3:], y, T[:, 3:])]
    )
    np.testing.assert_allclose(det.layer_scores(T), layers, rtol=1e-10)
    np.testing.assert_allclose(det.score_samples(T), layers @ weights, rtol=1e-10)
    np.testing.assert_array_equal(det.layer_weights_, weights)


def test_group_specifications_agree():
    X, y, T = _layers(widths=(2, 3, 2))
    expected = MultiMahalanobis(groups=[2, 3, 2]).fit(X, y).score_samples(T)
    mask = np.zeros(7, bool)
    mask[5:] = True
    for groups in (
        [slice(0, 2), slice(2, 5), slice(5, 7)],
        [np.arange(2), [2, 3, 4], mask],
        [[1, 0], [4, 2, 3], [6, 5]],  # column order inside a group is irrelevant
    ):
        scores = MultiMahalanobis(groups=groups).fit(X, y).score_samples(T)
        np.testing.assert_allclose(scores, expected, rtol=1e-9)


def test_default_is_one_group_and_y_none_is_one_class():
    X, y, T = _layers()
    det = MultiMahalanobis().fit(X)
    assert len(det.groups_) == 1 and det.layer_weights_.tolist() == [1.0]
    np.testing.assert_array_equal(det.classes_, [0])
    np.testing.assert_allclose(
        det.score_samples(T), ref_layer_score(X, np.zeros(len(X)), T), rtol=1e-10
    )


def test_agrees_with_pytorch_ood():
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, y, T = _layers()
    n, weights = len(X), [1.0, 2.5]
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # their buffers use the default
    try:
        theirs = detector_module.MultiMahalanobis([torch.nn.Identity()], alpha=weights)
        yt = torch.from_numpy(y)
        theirs.fit_structured(
            [torch.from_numpy(X[:, :3]), torch.from_numpy(X[:, 3:])], yt
        )
        their_scores = theirs.predict_structured(
            [torch.from_numpy(T[:, :3]), torch.from_numpy(T[:, 3:])]
        ).numpy()
    finally:
        torch.set_default_dtype(old)
    # They invert N * Sigma + 1e-6 I and halve: ours is -2N times theirs.
    ours = MultiMahalanobis(
        groups=[3, 4], layer_weights=weights, reg_covar=1e-6 / n
    ).fit(X, y)
    np.testing.assert_allclose(ours.score_samples(T), -2 * n * their_scores, rtol=1e-9)


# ------------------------------------------------------ learned layer weights
def _with_ood(seed=0):
    """Layer 1 separates OOD rows, layer 2 is noise for them."""
    X, y, _ = _layers(n=300, seed=seed)
    rng = np.random.default_rng(seed + 1)
    X_ood = X[:150] + np.r_[1.5, 1.5, 1.5, 0, 0, 0, 0] * rng.choice([-1, 1], (150, 1))
    return X, y, X_ood


def ref_weights(layer_scores, is_id):
    center, scale = layer_scores.mean(0), layer_scores.std(0)
    model = LogisticRegression(max_iter=1000).fit(
        (layer_scores - center) / scale, is_id
    )
    return model.coef_[0] / scale


def test_layer_weights_learned_in_fit():
    X, y, X_ood = _with_ood()
    X_all = np.vstack([X, X_ood])
    y_all = np.r_[y, -np.ones(len(X_ood), int)]
    det = MultiMahalanobis(groups=[3, 4], layer_weights="learn").fit(X_all, y_all)
    # Gaussians from the ID rows only.
    plain = MultiMahalanobis(groups=[3, 4]).fit(X, y)
    np.testing.assert_allclose(det.layer_scores(X_all), plain.layer_scores(X_all))
    expected = ref_weights(plain.layer_scores(X_all), y_all >= 0)
    np.testing.assert_allclose(det.layer_weights_, expected, rtol=1e-6)
    assert det.layer_weights_[0] > abs(det.layer_weights_[1])
    assert det.offset_ == pytest.approx(
        np.percentile(det.score_samples(X), 5), rel=1e-12
    )
    auc = roc_auc_score(y_all >= 0, det.score_samples(X_all))
    assert auc > roc_auc_score(y_all >= 0, plain.score_samples(X_all))


def test_fit_layer_weights_on_held_out_rows():
    X, y, X_ood = _with_ood()
    train, val = np.arange(200), np.arange(200, 300)
    det = MultiMahalanobis(groups=[3, 4]).fit(X[train], y[train])
    X_val = np.vstack([X[val], X_ood])
    y_val = np.r_[y[val], -np.ones(len(X_ood), int)]
    assert det.fit_layer_weights(X_val, y_val) is det
    expected = ref_weights(det.layer_scores(X_val), y_val >= 0)
    np.testing.assert_allclose(det.layer_weights_, expected, rtol=1e-6)
    # offset_ follows the new weights (ID fit rows, 5 % rejected).
    assert det.offset_ == pytest.approx(
        np.percentile(det.score_samples(X[train]), 5), rel=1e-12
    )


def test_learned_layer_weights_errors():
    X, y, _ = _layers()
    with pytest.raises(ValueError, match="requires y"):
        MultiMahalanobis(layer_weights="learn").fit(X)
    with pytest.raises(ValueError, match="out-of-distribution rows"):
        MultiMahalanobis(layer_weights="learn").fit(X, y)
    with pytest.raises(ValueError, match="cannot stream"):
        MultiMahalanobis(layer_weights="learn").partial_fit(X, y)
    det = MultiMahalanobis().fit(X, y)
    with pytest.raises(ValueError, match="out-of-distribution rows"):
        det.fit_layer_weights(X, y)


# ------------------------------------------------------------------ streaming
def test_partial_fit_in_chunks_equals_fit():
    X, y, T = _layers(n=240)
    order = np.argsort(y == 2, kind="stable")  # class 2 only in the last chunks
    X, y = X[order], y[order]
    det = MultiMahalanobis(
        groups=[np.array([0, 4, 5]), [1, 2, 3, 6]], layer_weights=[1, 3]
    )
    whole = det.fit(X, y)
    expected, offset = whole.score_samples(T), whole.offset_
    stream = MultiMahalanobis(**det.get_params())
    for rows in np.array_split(np.arange(len(X)), 6):
        stream.partial_fit(X[rows].astype(np.float32), y[rows])
    stream_64 = MultiMahalanobis(**det.get_params())
    chunks = [(X[rows], y[rows]) for rows in np.array_split(np.arange(len(X)), 6)]
    for chunk in chunks:
        stream_64.partial_fit(*chunk)
    np.testing.assert_allclose(stream_64.score_samples(T), expected, rtol=1e-10)
    assert stream_64.offset_ == pytest.approx(
        streamed_offset(stream_64, chunks), rel=1e-9
    )
    assert stream_64.offset_ == pytest.approx(offset, rel=0.5)
    # float32 chunks: float64 sums of the rounded values, close to the fit.
    np.testing.assert_allclose(stream.score_samples(T), expected, rtol=1e-4)


@pytest.mark.parametrize(
    "bad, match",
    [
        ("overflow", "overflowed float64"),
        ("overflow in one group", "overflowed float64"),
        ("unlabelled", "pass y"),
    ],
)
def test_refused_partial_fit_chunk_leaves_the_detector_unchanged(bad, match):
    X, y, T = _layers(n=150)
    good = [(X[:60], y[:60]), (X[60:110], y[60:110]), (X[110:], y[110:])]
    params = {"groups": [3, 4], "layer_weights": [1.0, 2.0]}
    det = MultiMahalanobis(**params).partial_fit(*good[0])
    before = pickle.dumps(det.__dict__)
    if bad == "overflow":
        chunk = (X[:20] * 1e200, y[:20])
    elif bad == "overflow in one group":  # the first group's sums are fine
        chunk = (X[:20] * np.r_[1, 1, 1, 1e200, 1e200, 1e200, 1e200], y[:20])
    else:
        chunk = (X[:20], None)
    with pytest.raises(ValueError, match=match):
        det.partial_fit(*chunk)
    assert pickle.dumps(det.__dict__) == before
    for chunk in good[1:]:
        det.partial_fit(*chunk)
    clean = MultiMahalanobis(**params)
    for chunk in good:
        clean.partial_fit(*chunk)
    assert pickle.dumps(det.__dict__) == pickle.dumps(clean.__dict__)
    np.testing.assert_array_equal(det.score_samples(T), clean.score_samples(T))


@pytest.mark.parametrize("scale", [1e155, 1e200])
def test_fit_and_score_beyond_the_float_range_raise(scale):
    X, y, T = _layers(n=60)
    with pytest.raises(ValueError, match="overflowed float64.*Rescale"):
        MultiMahalanobis(groups=[3, 4]).fit(X * scale, y)
    det = MultiMahalanobis(groups=[3, 4], layer_weights=[1.0, 0.0]).fit(X, y)
    T = T.copy()
    T[2, 4:] *= scale  # only in the second group, whose weight is 0
    for score in (det.score_samples, det.layer_scores):
        with pytest.raises(
            ValueError, match=r"cannot score 1 row\(s\) \(the first is row 2\)"
        ):
            score(T)
    # Infinite weighted sums of finite layer scores are refused as well.
    det.layer_weights_ = np.array([1e308, 1e308])
    with pytest.raises(ValueError, match="weighted sum.*float64 range"):
        det.score_samples(T[:2])


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "groups, match",
    [
        ([3, 3], "sum to the number of features, 7"),
        ([0, 7], "positive"),
        ([], "at least one group"),
        ([[0, 1], [7]], "outside 0..6"),
        ([[0, 0, 1]], "repeats a column"),
        ([slice(3, 3)], "selects no column"),
        ([[0.5, 1.0]], "1-D array of column indices"),
        ([np.zeros((2, 2), int)], "1-D array of column indices"),
        (3, "groups"),
    ],
)
def test_bad_groups(groups, match):
    X, y, _ = _layers()
    with pytest.raises(ValueError, match=match):
        MultiMahalanobis(groups=groups).fit(X, y)


@pytest.mark.parametrize("weights", [[1.0], [1.0, np.nan], "auto"])
def test_bad_layer_weights(weights):
    X, y, _ = _layers()
    with pytest.raises(ValueError, match="layer_weights"):
        MultiMahalanobis(groups=[3, 4], layer_weights=weights).fit(X, y)


# ------------------------------------------------------- hypothesis property
@given(st.integers(0, 2**16), st.randoms(use_true_random=False))
def test_any_partition_is_the_weighted_sum_of_its_groups(seed, random):
    X, y, T = _layers(n=60, widths=(2, 3), seed=seed, n_test=6)
    columns = list(range(5))
    random.shuffle(columns)
    cut = random.randint(1, 4)
    groups = [columns[:cut], columns[cut:]]
    weights = [random.uniform(-2, 2), random.uniform(-2, 2)]
    det = MultiMahalanobis(groups=groups, layer_weights=weights).fit(X, y)
    expected = sum(
        a * ref_layer_score(X[:, g], y, T[:, g]) for a, g in zip(weights, groups)
    )
    np.testing.assert_allclose(det.score_samples(T), expected, rtol=1e-7, atol=1e-7)
