"""Monotonicity of the logit detectors' scores, as hypothesis properties.

The formulas imply them (see each docstring): raising the largest logit with
the others fixed never lowers MaxSoftmax, MaxLogit, Energy, Entropy or GEN
(over all classes); Energy and WeightedEnergy (positive weights) increase in
every logit. GEN over fewer classes than the logits (``top_m``) is not
monotone, shown by a counterexample.
"""

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

# A coarse grid makes ties (several largest logits) common; finer values
# cover the rest.
logit_values = st.one_of(
    st.integers(-3, 3).map(float), st.floats(-30, 30, allow_nan=False, width=64)
)
steps = st.floats(0, 20, allow_nan=False, width=64)


@st.composite
def logits_and_steps(draw):
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, 6))
    X = draw(arrays(np.float64, (n, c), elements=logit_values))
    step = draw(arrays(np.float64, (n,), elements=steps))
    return X, step


def _raise_column(X, columns, step):
    raised = X.copy()
    rows = np.arange(len(X))
    raised[rows, columns] += step
    return raised


def _not_lower(after, before):
    """``after >= before`` up to the rounding of the scores."""
    tol = 1e-12 * (1.0 + np.abs(before))
    return np.all(after >= before - tol)


def _detectors(temperature, gamma):
    return {
        "MaxSoftmax": MaxSoftmax(temperature=temperature),
        "MaxLogit": MaxLogit(),
        "Energy": Energy(temperature=temperature),
        "Entropy": Entropy(),
        "GEN": GEN(gamma=gamma),
    }


@given(logits_and_steps(), st.floats(0.2, 5.0), st.floats(0.01, 0.99))
def test_raising_the_largest_logit_never_lowers_the_score(data, temperature, gamma):
    X, step = data
    # The first largest logit of each row (one of the tied ones).
    raised = _raise_column(X, X.argmax(axis=1), step)
    for name, det in _detectors(temperature, gamma).items():
        det.fit(X)
        before, after = det.score_samples(X), det.score_samples(raised)
        assert _not_lower(after, before), name


@given(logits_and_steps(), st.data(), st.floats(0.2, 5.0))
def test_energy_increases_in_every_logit(data, draw, temperature):
    X, step = data
    columns = draw.draw(
        arrays(np.int64, (len(X),), elements=st.integers(0, X.shape[1] - 1))
    )
    raised = _raise_column(X, columns, step)
    weights = draw.draw(
        arrays(np.float64, (X.shape[1],), elements=st.floats(0.1, 10.0))
    )
    for det in (
        Energy(temperature=temperature),
        WeightedEnergy(weights=weights, temperature=temperature),
    ):
        det.fit(X)
        before, after = det.score_samples(X), det.score_samples(raised)
        assert _not_lower(after, before), det
        # Strictly where the raised logit carries visible softmax mass:
        # d s / d l_j = w_j exp(l_j / T) / sum_k w_k exp(l_k / T).
        rows = np.arange(len(X))
        near_top = X[rows, columns] >= X.max(axis=1) - 3 * temperature
        visible = near_top & (step >= 1e-3)
        assert np.all(after[visible] > before[visible]), det


def test_energy_strictly_increasing_example():
    X = np.array([[0.0, 1.0, -2.0]])
    det = Energy().fit(np.vstack([X, X]))
    scores = [det.score_samples(X + np.eye(3)[j] * 0.5)[0] for j in range(3)]
    assert all(s > det.score_samples(X)[0] for s in scores)


def test_gen_over_fewer_classes_is_not_monotone():
    """With ``top_m < n_classes`` GEN can fall as the largest logit rises.

    Four equal logits: p = 1/4 for each class. Raising the first logit to
    0.5 raises its probability to about 0.30, still below 1/2, where the
    term p^gamma (1 - p)^gamma grows; with ``top_m=1`` that term is the
    whole sum, so the score (its negation) falls. Over all classes the
    three shrinking terms outweigh it and the score rises.
    """
    X = np.zeros((1, 4))
    raised = np.array([[0.5, 0.0, 0.0, 0.0]])
    for top_m in (1, 2):
        det = GEN(top_m=top_m).fit(np.vstack([X, raised]))
        assert det.score_samples(raised)[0] < det.score_samples(X)[0], top_m
    det = GEN().fit(np.vstack([X, raised]))
    assert det.score_samples(raised)[0] > det.score_samples(X)[0]


@pytest.mark.parametrize("cls", [MaxSoftmax, Entropy, GEN])
def test_raising_a_smaller_logit_can_lower_softmax_scores(cls):
    # The counterpart of the property above: these scores are not monotone
    # in the other logits (Energy never falls, MaxLogit ignores them).
    # Raising a smaller logit towards the largest spreads the softmax.
    X = np.array([[3.0, 0.0, 0.0]])
    raised = np.array([[3.0, 2.0, 0.0]])
    det = cls().fit(np.vstack([X, raised]))
    assert det.score_samples(raised)[0] < det.score_samples(X)[0]
