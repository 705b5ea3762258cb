"""The skeleton of the activation-shaping family: shape, take logits, score.

:class:`BaseShapedLogitDetector` is shared by ReAct, DICE, ASH and SCALE
(:mod:`~sklearn_ood.detectors._shaping`), VRA
(:mod:`~sklearn_ood.detectors._rectification`) and LTS
(:mod:`~sklearn_ood.detectors._logit_scaling`), as
:mod:`~sklearn_ood.detectors._gaussian` serves the Gaussian family.
"""

import numpy as np
from sklearn.base import clone
from sklearn.utils._param_validation import HasMethods

from sklearn_ood.base import BaseDetector, _is_stateless
from sklearn_ood.detectors._head import check_head
from sklearn_ood.detectors._logits import Energy
from sklearn_ood.utils._chunking import row_chunks

__all__ = ["BaseShapedLogitDetector", "product_weights"]


def product_weights(W, dtype):
    """The head weights for the product with features of ``dtype``: a float32
    copy for float32 features (a single-precision product), else ``W``."""
    return W if dtype == np.float64 else W.astype(np.float32)


class BaseShapedLogitDetector(BaseDetector):
    """Shape the features, compute the head's logits, score them with a detector.

    Subclasses list their own hyper-parameters and implement
    ``_fit_shaping(X, y)`` (fitted statistics, from the ID fit rows in their
    own dtype, float32 or float64, once ``coef_`` and ``intercept_`` are set) and
    ``_block_logits(X, out)`` (writes the float64 shaped logits ``W shape(x)
    + b`` of a block of rows, float32 or float64, into ``out``).

    ``fit`` resolves ``head`` with :func:`check_head`, fits the shaping, then
    fits a clone of ``detector`` (``Energy()`` when None) on the shaped logits
    of the ID fit rows, passing ``y``; the user's ``detector`` is never fitted.
    The clone learns no threshold of its own (``contamination=None`` when it
    is a detector of this package): ``offset_`` is the outer detector's, from
    the shaped logits of (a sample of) the fit rows. A stateless inner
    detector (``Energy``, ``MaxSoftmax``, ``MaxLogit``, ``Entropy``, ``GEN``)
    learns nothing from the rows, so the clone is fitted on the logits of the
    first row only (which validates its parameters and sets its
    ``n_features_in_``), and ``fit`` shapes only the rows that set
    ``offset_``. ``score_samples`` is that clone's ``score_samples`` of the
    shaped logits. Labels are required exactly when the inner detector
    requires them.
    """

    _family = "activation-shaping"

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "head": [object],  # resolved and checked by check_head in fit
        "detector": [HasMethods(["fit", "score_samples"]), None],
    }

    @property
    def _requires_labels(self):
        return bool(getattr(self.detector, "_requires_labels", False))

    def _fit(self, X, y):
        if self.detector is None:
            detector = Energy()
        elif isinstance(self.detector, type):
            raise ValueError(
                f"detector must be a detector instance such as "
                f"{self.detector.__name__}(), not the class itself."
            )
        else:
            detector = clone(self.detector, safe=False)
        if isinstance(detector, BaseDetector):
            detector.set_params(contamination=None)  # the threshold is ours
        self.coef_, self.intercept_ = check_head(self.head, X.shape[1])
        self._fit_shaping(X, y)
        if _is_stateless(detector):
            detector.fit(self._shaped_logits(X[:1]), None if y is None else y[:1])
        else:
            detector.fit(self._shaped_logits(X), y)
        self.detector_ = detector

    def _fit_shaping(self, X, y):
        """Learn the shaping statistics; nothing by default."""

    def _block_logits(self, X, out):  # pragma: no cover - abstract
        raise NotImplementedError

    def _shaped_logits(self, X):
        """Float64 shaped logits of the rows of ``X``, a block of rows at a time."""
        X = np.asarray(X)
        if X.dtype != np.float32:
            X = X.astype(np.float64, copy=False)
        n_classes = len(self.intercept_)
        logits = np.empty((len(X), n_classes))
        # A block's temporaries: a shaped (or float64) copy of its features
        # and their product with the head.
        row_bytes = 8 * (X.shape[1] + n_classes)
        # Overflow (inf, then inf * 0 = NaN) is refused below, not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            for rows in row_chunks(len(X), row_bytes):
                self._block_logits(X[rows], logits[rows])
            bad = np.flatnonzero(~np.all(np.isfinite(logits), axis=1))
            if bad.size and X.dtype == np.float32:
                # A float32 product (ASH, SCALE) overflows at 3.4e38: redo
                # those rows in float64 before calling them overflowing.
                for rows in row_chunks(bad.size, row_bytes):
                    redone = np.empty((len(bad[rows]), n_classes))
                    self._block_logits(X[bad[rows]].astype(np.float64), redone)
                    logits[bad[rows]] = redone
                bad = bad[~np.all(np.isfinite(logits[bad]), axis=1)]
        if bad.size:
            raise ValueError(
                f"{type(self).__name__}: the shaped logits of {bad.size} "
                "row(s) are not finite because the shaped features overflow "
                "float64 (for ASH-S and SCALE the factor exp(s1 / s2) grows up to "
                "exp(n_features / k): lower `percentile`)."
            )
        return logits

    def _score(self, X):
        return self.detector_.score_samples(self._shaped_logits(X))
