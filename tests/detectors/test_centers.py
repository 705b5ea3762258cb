"""CenterDistance and CACScore against float64 references written from the
papers' formulas, the forms of ``centers``, and pytorch-ood 0.4.0."""

import math

import numpy as np
import pytest

from sklearn_ood.detectors import CACScore, CenterDistance, check_centers


def _problem(n=120, d=4, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    X = 3.0 * np.eye(c, d)[y] + rng.normal(size=(n, d))
    X_test = np.vstack([X[:10] + 0.1, rng.normal(scale=4.0, size=(10, d))])
    return X, y, X_test


# ---------------------------------------------------------------- references
def ref_center_distance(X, centers):
    """-min_k sum_j (x_j - c_kj)^2, loop style."""
    return np.array(
        [-min(sum((xj - cj) ** 2 for xj, cj in zip(x, c)) for c in centers) for x in X]
    )


def ref_cac(X, anchors):
    """-min_c d_c (1 - softmin(d)_c), d Euclidean (Miller et al.)."""
    scores = []
    for x in X:
        d = [math.sqrt(sum((xj - aj) ** 2 for xj, aj in zip(x, a))) for a in anchors]
        weights = [math.exp(-(dc - min(d))) for dc in d]
        softmin = [w / sum(weights) for w in weights]
        scores.append(-min(dc * (1 - s) for dc, s in zip(d, softmin)))
    return np.array(scores)


def test_center_distance_class_means_match_reference():
    X, y, X_test = _problem()
    det = CenterDistance().fit(X, y)
    means = np.array([X[y == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(det.centers_, means, rtol=1e-12)
    np.testing.assert_array_equal(det.classes_, [0, 1, 2])
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_center_distance(X_test, means), rtol=1e-12
    )
    assert det.offset_ == pytest.approx(
        np.percentile(ref_center_distance(X, means), 5), rel=1e-12
    )


def test_center_distance_without_labels_is_one_center():
    X, _, X_test = _problem()
    det = CenterDistance().fit(X)
    assert not hasattr(det, "classes_")
    np.testing.assert_allclose(det.centers_, X.mean(axis=0, keepdims=True))
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_center_distance(X_test, det.centers_)
    )


def test_center_distance_ignores_outlier_rows():
    X, y, _ = _problem()
    X_out = np.full((5, 4), 50.0)
    det = CenterDistance().fit(np.vstack([X, X_out]), np.r_[y, -np.ones(5, int)])
    np.testing.assert_allclose(
        det.centers_, CenterDistance().fit(X, y).centers_, rtol=1e-12
    )


@pytest.mark.parametrize(
    "centers",
    [
        np.array([[0.0, 1.0, 0.0, 0.0], [2.0, 0.0, 1.0, -1.0]]),
        [[0.0, 1.0, 0.0, 0.0], [2.0, 0.0, 1.0, -1.0]],
        lambda n: np.eye(2, n),
    ],
    ids=["array", "list", "callable"],
)
def test_center_distance_given_centers(centers):
    X, y, X_test = _problem()
    det = CenterDistance(centers).fit(X, y)
    expected = check_centers(centers, 4)
    np.testing.assert_array_equal(det.centers_, expected)
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_center_distance(X_test, expected), rtol=1e-12
    )


def test_single_center_as_a_vector():
    X, _, X_test = _problem()
    det = CenterDistance(np.ones(4)).fit(X)
    assert det.centers_.shape == (1, 4)
    np.testing.assert_allclose(det.score_samples(X_test), -((X_test - 1) ** 2).sum(1))


def test_cac_score_anchors_match_reference():
    X, y, X_test = _problem()
    det = CACScore(magnitude=3.0).fit(X, y)
    np.testing.assert_array_equal(det.centers_, 3.0 * np.eye(4))
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_cac(X_test, det.centers_), rtol=1e-10, atol=1e-13
    )
    assert det.offset_ == pytest.approx(
        np.percentile(ref_cac(X, det.centers_), 5), rel=1e-10
    )


def test_cac_score_class_means_match_reference():
    X, y, X_test = _problem()
    det = CACScore("class_means").fit(X, y)
    means = np.array([X[y == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_cac(X_test, means), rtol=1e-10, atol=1e-13
    )


def test_cac_score_keeps_its_digits_near_an_anchor():
    # 1 - softmin is about e^{-40}: 0 in the naive form 1 - softmin
    anchors = 30.0 * np.eye(2)
    x = np.array([[30.0, 0.0], [29.9, 0.0]])
    score = CACScore(anchors).fit(x).score_samples(x)
    d = np.sqrt(((x[1] - anchors) ** 2).sum(1))
    expected = -d[0] * math.exp(-d[1]) / (math.exp(-d[0]) + math.exp(-d[1]))
    assert expected < -1e-20
    assert score[0] == 0.0
    assert score[1] == pytest.approx(expected, rel=1e-12)


def test_float32_in_float32_out():
    X, y, X_test = _problem()
    for det in (CenterDistance(), CACScore(magnitude=3.0)):
        s64 = det.fit(X, y).score_samples(X_test)
        s32 = det.fit(X.astype(np.float32), y).score_samples(X_test.astype(np.float32))
        assert s32.dtype == np.float32
        np.testing.assert_allclose(s32, s64, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ forms of centers
def test_centers_from_torch_losses_and_a_fitted_net():
    torch = pytest.importorskip("torch")
    from sklearn_ood.torch import CACLoss, CenterLoss, DeepSVDDLoss

    mu = np.arange(12.0).reshape(3, 4)
    loss = CenterLoss(3, 4, initial_centers=mu)
    np.testing.assert_allclose(check_centers(loss, 4), mu)
    np.testing.assert_allclose(check_centers(loss.centers, 4), mu)
    np.testing.assert_allclose(
        check_centers(CACLoss(4, magnitude=2.0), 4), 2 * np.eye(4)
    )
    svdd = DeepSVDDLoss(4, initial_center=torch.ones(4))
    np.testing.assert_allclose(check_centers(svdd, 4), np.ones((1, 4)))

    class Net:  # what check_centers reads of a fitted OODNeuralNetClassifier
        criterion_ = loss

    np.testing.assert_allclose(check_centers(Net(), 4), mu)
    with pytest.raises(ValueError, match="NaN until its first"):
        check_centers(DeepSVDDLoss(4), 4)


def test_centers_from_pytorch_ood_losses():
    torch = pytest.importorskip("torch")
    po_loss = pytest.importorskip("pytorch_ood.loss")
    center = po_loss.CenterLoss(n_classes=3, n_dim=4)
    np.testing.assert_allclose(
        check_centers(center, 4), center.centers.params.detach().numpy()
    )
    ii = po_loss.IILoss(n_classes=3, n_embedding=4)
    ii(torch.randn(9, 4), torch.arange(9) % 3)
    np.testing.assert_allclose(check_centers(ii, 4), ii.centers.centers.numpy())
    svdd = po_loss.DeepSVDDLoss(n_dim=4, center=torch.ones(4))
    np.testing.assert_allclose(check_centers(svdd, 4), np.ones((1, 4)))


def test_scores_vs_pytorch_ood():
    """CenterDistance is minus the min of pytorch-ood's squared distances;
    pytorch-ood's CAC score is -max_c of the product, ours -min_c."""
    torch = pytest.importorskip("torch")
    po_loss = pytest.importorskip("pytorch_ood.loss")
    X, y, X_test = _problem()
    center = po_loss.CenterLoss(n_classes=3, n_dim=4)
    center.centers._params.data = torch.tensor(np.eye(3, 4))
    theirs = center.distance(torch.tensor(X_test)).min(dim=1).values
    theirs = theirs.detach().numpy()
    ours = CenterDistance(center).fit(X).score_samples(X_test)
    np.testing.assert_allclose(ours, -theirs, rtol=1e-10, atol=1e-12)

    det = CACScore(magnitude=3.0).fit(X)
    d = np.sqrt(((X_test[:, None] - det.centers_[None]) ** 2).sum(2))
    product = d * (1 - np.exp(-d) / np.exp(-d).sum(1, keepdims=True))
    theirs = po_loss.CACLoss.score(torch.tensor(d)).numpy()
    np.testing.assert_allclose(theirs, -product.max(axis=1), rtol=1e-10)
    np.testing.assert_allclose(
        det.score_samples(X_test), -product.min(axis=1), rtol=1e-10, atol=1e-13
    )


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "det, match",
    [
        (CenterDistance(np.eye(2, 3)), "have 3 coordinates but X has 4"),
        (CenterDistance([[np.nan] * 4]), "finite"),
        (CenterDistance("anchors"), r"one of \('class_means',\)"),
        (CenterDistance(5), "centers must be an array"),
        (CenterDistance(np.zeros((0, 4))), "at least one"),
        (CACScore(np.ones((1, 4))), "at least 2 anchors"),
        (CACScore("class_means"), "at least 2 anchors"),  # fit without y
        (CACScore("means"), "one of"),
        (CACScore(magnitude=0.0), "magnitude"),
    ],
)
def test_errors(det, match):
    X, _, _ = _problem()
    with pytest.raises(ValueError, match=match):
        det.fit(X)


def test_huge_values_are_refused():
    X, y, _ = _problem()
    det = CenterDistance().fit(X, y)
    with pytest.raises(ValueError, match="float64 range"):
        det.score_samples(np.full((2, 4), 1e200))
    with pytest.raises(ValueError, match="float32 range"):
        det.fit(X.astype(np.float32), y).score_samples(
            np.full((2, 4), 3e38, dtype=np.float32)
        )
    cac = CACScore(magnitude=3.0).fit(X)
    with pytest.raises(ValueError, match="cannot score 2 row"):
        cac.score_samples(np.full((2, 4), 1e200))
