"""Monotonicity of the OOD metrics in one row's score (hypothesis properties).

Moving an OOD row's score down, or an ID row's score up, can only help a
detector: AUROC never falls, FPR at any TPR (both ``positive`` conventions)
and the detection error never rise. AUPR is monotone only in the rows of
its negative class: AUPR-In (ID positive) never falls when an OOD score is
lowered, AUPR-Out never falls when an ID score is raised, for both summaries
of the curve. Moving a row of the positive class into a tie can lower
either summary; the last tests show it. A brute-force check over every
labelling and score of up to 5 rows on the grid {0, 1, 2, 3}, and every
such move (253,728 moves), found no other violation.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_ood.metrics import aupr_in, aupr_out, auroc, detection_error, fpr_at_tpr

# Areas are float sums over curve points: a move that leaves the area
# unchanged in exact arithmetic can change the points and the last bit.
AREA_TOL = 1e-12
AUPR_METHODS = ("average_precision", "trapezoid")

# small integer grids make ties frequent; at most 30 + 30 rows
_grid = st.lists(st.integers(-6, 6), min_size=1, max_size=30)


def _data(id_ints, ood_ints):
    y = np.r_[np.zeros(len(id_ints), dtype=int), -np.ones(len(ood_ints), dtype=int)]
    s = np.array(id_ints + ood_ints, dtype=np.float64) / 2.0
    return y, s


@st.composite
def _one_row_moved(draw, cls):
    """(y, before, after): one row of class ``cls`` made more ID-like or less.

    ``cls="ood"`` lowers one OOD row's score, ``cls="id"`` raises one ID
    row's score, by any amount (possibly into a tie with other rows).
    """
    id_ints, ood_ints = draw(_grid), draw(_grid)
    y, before = _data(id_ints, ood_ints)
    rows = np.flatnonzero(y < 0) if cls == "ood" else np.flatnonzero(y >= 0)
    j = draw(st.sampled_from(rows.tolist()))
    step = draw(st.integers(1, 16)) / 2.0
    after = before.copy()
    after[j] += -step if cls == "ood" else step
    perm = draw(st.permutations(range(y.shape[0])))
    return y[perm], before[perm], after[perm]


def _assert_no_worse(y, before, after, tpr):
    assert auroc(y, after) >= auroc(y, before) - AREA_TOL
    for positive in ("id", "ood"):
        # counts over n, compared with tpr: exact, no tolerance needed
        assert fpr_at_tpr(y, after, tpr, positive=positive) <= fpr_at_tpr(
            y, before, tpr, positive=positive
        )
    assert detection_error(y, after) <= detection_error(y, before)


@settings(deadline=None)
@given(moved=_one_row_moved("ood"), tpr=st.floats(0.01, 1.0))
def test_lowering_an_ood_score_never_hurts(moved, tpr):
    y, before, after = moved
    _assert_no_worse(y, before, after, tpr)
    for method in AUPR_METHODS:
        assert aupr_in(y, after, method=method) >= (
            aupr_in(y, before, method=method) - AREA_TOL
        )


@settings(deadline=None)
@given(moved=_one_row_moved("id"), tpr=st.floats(0.01, 1.0))
def test_raising_an_id_score_never_hurts(moved, tpr):
    y, before, after = moved
    _assert_no_worse(y, before, after, tpr)
    for method in AUPR_METHODS:
        assert aupr_out(y, after, method=method) >= (
            aupr_out(y, before, method=method) - AREA_TOL
        )


@pytest.mark.parametrize(
    "method, before, after, values",
    [
        # raising the first ID row into a tie with the OOD row at the top
        ("average_precision", [0.0, 0.0, 1.0], [1.0, 0.0, 1.0], (8 / 12, 7 / 12)),
        # raising the first ID row into a tie with the other ID row
        ("trapezoid", [0.0, 1.0, 2.0], [1.0, 1.0, 2.0], (5 / 12, 4 / 12)),
    ],
)
def test_aupr_is_not_monotone_in_the_positive_class(method, before, after, values):
    # AUPR-In with ID rows [0, 1] and an OOD row 2: raising an ID score lowers it
    y = np.array([0, 0, -1])
    assert aupr_in(y, before, method=method) == pytest.approx(values[0])
    assert aupr_in(y, after, method=method) == pytest.approx(values[1])
    # the mirror image: lowering an OOD score lowers AUPR-Out
    y_mirror = -1 - y
    neg = [-v for v in before], [-v for v in after]
    assert aupr_out(y_mirror, neg[0], method=method) == pytest.approx(values[0])
    assert aupr_out(y_mirror, neg[1], method=method) == pytest.approx(values[1])
