"""MCM against a float64 reference written from the paper, and pytorch-ood."""

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from sklearn_ood.detectors import MCM

N_FEATURES, N_CLASSES = 8, 5


def _embeddings(n=40, seed=0):
    """Class text embeddings (unnormalised) and image embeddings near them."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(N_CLASSES, N_FEATURES)) * rng.uniform(0.5, 3, (5, 1))
    y = rng.integers(0, N_CLASSES, size=n)
    images = 2.0 * text[y] + rng.normal(size=(n, N_FEATURES))
    return images, y, text


# ---------------------------------------------------------------- reference
def ref_mcm(X, text, temperature):
    """max_c exp(cos(x, t_c) / T) / sum_j exp(cos(x, t_j) / T), loop style."""
    scores = []
    for x in X:
        cos = [
            float(x @ t) / (math.sqrt(float(x @ x)) * math.sqrt(float(t @ t)))
            for t in text
        ]
        weights = [math.exp(c / temperature) for c in cos]
        scores.append(max(weights) / sum(weights))
    return np.array(scores)


@pytest.mark.parametrize("temperature", [0.01, 1.0, 10.0])
def test_matches_reference(temperature):
    X, y, text = _embeddings()
    X_test = _embeddings(n=25, seed=1)[0] + np.random.default_rng(2).normal(
        size=(25, N_FEATURES)
    )
    det = MCM(head=text, temperature=temperature).fit(X, y)
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_mcm(X_test, text, temperature), rtol=1e-12
    )
    assert det.offset_ == pytest.approx(
        np.percentile(ref_mcm(X, text, temperature), 5), rel=1e-12
    )


def test_float32_in_float32_out():
    X, _, text = _embeddings()
    s64 = MCM(head=text).fit(X).score_samples(X)
    X32 = X.astype(np.float32)
    s32 = MCM(head=text).fit(X32).score_samples(X32)
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-6)


def test_score_range_and_zero_row():
    X, _, text = _embeddings()
    det = MCM(head=text).fit(X)
    scores = det.score_samples(np.vstack([X, np.zeros((1, N_FEATURES))]))
    assert np.all(scores >= 1 / N_CLASSES - 1e-15) and np.all(scores <= 1)
    assert scores[-1] == pytest.approx(1 / N_CLASSES, rel=1e-15)


def test_only_directions_count():
    # Rescaling an image row or a class embedding changes nothing, even at
    # scales whose squares leave the float64 range.
    X, _, text = _embeddings()
    expected = MCM(head=text).fit(X).score_samples(X)
    scales = np.array([1e-200, 1.0, 7.0, 1e200, 0.5])[:, np.newaxis]
    det = MCM(head=text * scales).fit(X * 1e200)
    np.testing.assert_allclose(det.score_samples(X * 1e200), expected, rtol=1e-12)
    np.testing.assert_allclose(det.score_samples(X * 1e-200), expected, rtol=1e-12)


def test_fit_learns_nothing_from_the_rows():
    X, y, text = _embeddings()
    X_other = _embeddings(seed=5)[0]
    a = MCM(head=text).fit(X, y)
    b = MCM(head=text).fit(X_other)
    np.testing.assert_array_equal(a.score_samples(X_other), b.score_samples(X_other))
    np.testing.assert_allclose(
        np.linalg.norm(a.class_embeddings_, axis=1), 1.0, rtol=1e-15
    )


# ------------------------------------------------------------ head forms
def test_head_forms_give_the_same_scores():
    X, _, text = _embeddings()
    expected = MCM(head=text).fit(X).score_samples(X)
    bias = np.arange(N_CLASSES, dtype=float)  # not used: a cosine has no bias
    forms = [
        (text, bias),
        (text, None),
        text.tolist(),
        [text, bias],
        lambda n_features: text,
        lambda n_features: (text, bias),
    ]
    for head in forms:
        np.testing.assert_allclose(
            MCM(head=head).fit(X).score_samples(X), expected, rtol=1e-14
        )
    clf = LogisticRegression(max_iter=1000).fit(X, _embeddings()[1])
    np.testing.assert_allclose(
        MCM(head=clf).fit(X).score_samples(X),
        MCM(head=clf.coef_).fit(X).score_samples(X),
    )


def test_torch_heads():
    torch = pytest.importorskip("torch")
    X, _, text = _embeddings()
    expected = MCM(head=text).fit(X).score_samples(X)
    tensor = torch.from_numpy(text)
    np.testing.assert_allclose(
        MCM(head=tensor).fit(X).score_samples(X), expected, rtol=1e-14
    )
    layer = torch.nn.Linear(N_FEATURES, N_CLASSES).double()
    with torch.no_grad():
        layer.weight.copy_(tensor)
    np.testing.assert_allclose(
        MCM(head=layer).fit(X).score_samples(X), expected, rtol=1e-14
    )


# ------------------------------------------------------- cross-check pytorch-ood
@pytest.mark.parametrize("temperature", [0.01, 1.0])
def test_agrees_with_pytorch_ood(temperature):
    # Ours is minus theirs (theirs computes in float32).
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, _, text = _embeddings()
    theirs = detector_module.MCM(
        None, text_embeddings=torch.from_numpy(text), temperature=temperature
    )
    their_scores = theirs.predict_features(torch.from_numpy(X)).double().numpy()
    ours = MCM(head=text, temperature=temperature).fit(X).score_samples(X)
    np.testing.assert_allclose(ours, -their_scores, rtol=1e-5)


# ------------------------------------------------------------------ errors
def test_nan_and_wrong_width_are_refused():
    X, _, text = _embeddings()
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MCM(head=text).fit(bad)
    det = MCM(head=text).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(bad)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(X[:, :5])
    with pytest.raises(ValueError, match="expects 8 input features"):
        MCM(head=text).fit(X[:, :6])


def test_bad_embeddings_are_refused():
    X, _, text = _embeddings()
    zero = text.copy()
    zero[3] = 0.0
    with pytest.raises(ValueError, match=r"embedding\(s\) \[3\] are all zero"):
        MCM(head=zero).fit(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MCM(head=text[:1]).fit(X)
    inf = text.copy()
    inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        MCM(head=inf).fit(X)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_bad_temperature(temperature):
    X, _, text = _embeddings()
    with pytest.raises(ValueError, match="temperature"):
        MCM(head=text, temperature=temperature).fit(X)
