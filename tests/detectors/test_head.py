"""check_head: every accepted form of a linear head gives the same (W, b)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from sklearn_ood.detectors import check_head


def _linear_data(n_classes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 4))
    y = np.arange(60) % n_classes
    return X, y


def test_pair_with_and_without_bias():
    W = np.arange(6.0).reshape(2, 3)
    W_out, b_out = check_head((W, [1.0, 2.0]), n_features=3)
    np.testing.assert_array_equal(W_out, W)
    np.testing.assert_array_equal(b_out, [1.0, 2.0])
    np.testing.assert_array_equal(check_head((W, None), 3)[1], [0.0, 0.0])


def test_torch_linear_layer():
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(3, 2)
    W, b = check_head(layer, n_features=3)
    np.testing.assert_allclose(W, layer.weight.detach().numpy())
    np.testing.assert_allclose(b, layer.bias.detach().numpy())
    no_bias = torch.nn.Linear(3, 2, bias=False)
    np.testing.assert_array_equal(check_head(no_bias, 3)[1], [0.0, 0.0])


def test_multiclass_sklearn_model_reproduces_decision_function():
    X, y = _linear_data(3)
    model = LogisticRegression().fit(X, y)
    W, b = check_head(model, n_features=4)
    np.testing.assert_allclose(X @ W.T + b, model.decision_function(X))


def test_binary_sklearn_model_becomes_two_class_head():
    X, y = _linear_data(2)
    model = LogisticRegression().fit(X, y)
    W, b = check_head(model, n_features=4)
    logits = X @ W.T + b
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, model.predict_proba(X))


def test_callable_head_is_built_for_the_feature_count():
    W, b = check_head(lambda d: (np.ones((2, d)), np.zeros(2)), n_features=5)
    assert W.shape == (2, 5)


@pytest.mark.parametrize(
    "head, match",
    [
        ((np.ones((2, 3)), np.ones(3)), "expected shape \\(2,\\)"),
        ((np.ones((2, 4)), np.ones(2)), "expects 4 input features but X has 3"),
        ((np.ones(3), np.ones(1)), "must be 2-D"),
        ((np.full((2, 3), np.nan), np.ones(2)), "finite"),
        ("not a head", "must be a \\(W, b\\) pair"),
    ],
)
def test_bad_heads_raise(head, match):
    with pytest.raises(ValueError, match=match):
        check_head(head, n_features=3)


# ------------------------------------------------------ float32 fast logits
def test_head_logits_fast_float32_bound_and_argmax():
    """float32 rows: float32 products within the stated bound, and the
    float64 arg-max even for rows built to tie (redone in float64)."""
    from sklearn_ood.detectors._head import head_logits, head_logits_fast

    rng = np.random.default_rng(0)
    n_features = 64
    W = rng.normal(size=(7, n_features))
    b = rng.normal(size=7)
    X = rng.normal(size=(9000, n_features)).astype(np.float32)  # 3 blocks
    # Rows on the boundary between classes 0 and 1 (up to float32 rounding).
    direction = (W[0] - W[1]) / np.linalg.norm(W[0] - W[1])
    ties = X[:500].astype(np.float64)
    ties -= np.outer(
        ties @ direction + (b[0] - b[1]) / np.linalg.norm(W[0] - W[1]), direction
    )
    ties[:, :] += 1e-9 * rng.normal(size=ties.shape)
    X[:500] = ties.astype(np.float32)
    fast, exact = head_logits_fast(X, W, b), head_logits(X, W, b)
    bound = (
        (n_features + 2)
        * 2.0**-24
        * np.linalg.norm(X.astype(np.float64), axis=1)[:, None]
        * np.linalg.norm(W, axis=1)[None]
    )
    assert np.all(np.abs(fast - exact) <= bound)
    np.testing.assert_array_equal(fast.argmax(axis=1), exact.argmax(axis=1))
    # float64 rows: the float64 logits themselves.
    np.testing.assert_array_equal(head_logits_fast(X.astype(np.float64), W, b), exact)


def test_head_logits_fast_float32_overflow_is_redone_in_float64():
    from sklearn_ood.detectors._head import head_logits, head_logits_fast

    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(3, 5)) * 1e30, np.zeros(3)
    X = rng.normal(size=(10, 5)).astype(np.float32) * np.float32(1e20)
    fast = head_logits_fast(X, W, b)  # products of about 1e50
    assert np.all(np.isfinite(fast))
    np.testing.assert_array_equal(fast, head_logits(X, W, b))


@pytest.mark.parametrize("scale", [1.0, 1e-24])
def test_head_logits_fast_redoes_the_candidates_of_near_ties(scale):
    """Rows at a boundary: the tied logits are the float64 ones, whatever the
    scale of the rows (squares below the float32 range use the float64 norm)."""
    from sklearn_ood.detectors._head import head_logits, head_logits_fast

    rng = np.random.default_rng(2)
    W, b = rng.normal(size=(5, 32)), np.zeros(5)
    direction = (W[0] - W[1]) / np.linalg.norm(W[0] - W[1])
    X = 3 * rng.normal(size=(400, 32))
    X -= np.outer(X @ direction, direction)  # l_0 = l_1 up to rounding
    X += 1e-7 * rng.normal(size=X.shape)
    X = (scale * X).astype(np.float32)
    fast, exact = head_logits_fast(X, W, b), head_logits(X, W, b)
    np.testing.assert_array_equal(fast.argmax(axis=1), exact.argmax(axis=1))
    tied = np.isin(exact.argmax(axis=1), [0, 1])
    assert tied.sum() > 50
    np.testing.assert_allclose(fast[tied, :2], exact[tied, :2], rtol=1e-12)
