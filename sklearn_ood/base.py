"""Shared base class for every detector in sklearn-ood.

A detector only writes two hooks:

* ``_fit(X, y)`` learns its statistics from the in-distribution (ID) rows;
* ``_score(X)`` returns one score per row, *higher for more in-distribution*.

Everything else -- parameter and input validation, the label convention
(``y < 0`` marks out-of-distribution rows), the ``contamination`` threshold
``offset_``, ``decision_function``, ``predict`` and ``fit_predict`` -- lives
here so that all detectors behave the same way (see ``DESIGN.md``).
"""

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from sklearn_ood._labels import check_ood_labels

__all__ = ["BaseDetector", "PartialFitMixin", "check_ood_labels"]


class BaseDetector(OutlierMixin, BaseEstimator):
    """Base class for OOD detectors: validation, label masks, threshold.

    Subclasses implement ``_fit(X, y)`` and ``_score(X)`` and may set the
    class attributes below. They list their own hyper-parameters in
    ``_parameter_constraints`` (merged with ``contamination``) and in
    ``__init__`` (which only stores them, as scikit-learn requires).

    Class attributes
    ----------------
    _requires_labels : bool
        ``fit`` raises when ``y`` is None.
    _uses_outliers : bool
        ``_fit`` receives the OOD rows (``y < 0``) too. Otherwise they are
        dropped before ``_fit`` and never influence the fitted model.
    _class_aware : bool
        ``fit`` sets ``classes_`` to the sorted unique ID labels.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.05
        Fraction of the in-distribution fit rows that ``predict`` rejects:
        ``offset_`` is that quantile of their scores (of a seeded uniform
        sample of 10,000 of them when there are more). The default 0.05 is the
        95 % true-positive-rate operating point used by OOD papers.

    Attributes
    ----------
    offset_ : float
        Threshold: ``decision_function(X) = score_samples(X) - offset_``.
        Computed on first use (``decision_function``, ``predict`` or reading
        ``offset_``), from a sample of the fit rows that ``fit`` keeps: see
        Notes. It may be assigned to set a threshold by hand.
    n_features_in_ : int
        Number of columns seen during ``fit``.

    Notes
    -----
    ``fit`` keeps the seeded sample of at most 10,000 ID fit rows (a copy,
    or only their indices for detectors that store the fit rows anyway) and
    the ``contamination`` it was fitted with; the first use of ``offset_``
    scores that sample once, stores the value and frees the sample.
    ``score_samples`` never needs the threshold, so evaluating a detector by
    AUROC/FPR or tuning it with :func:`~sklearn_ood.metrics.ood_scorer`
    never pays for it, and ``partial_fit`` does not rescore the sample after
    every chunk.
    """

    _parameter_constraints: dict = {
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
    }

    _requires_labels = False
    _uses_outliers = False
    _class_aware = False

    # offset_ is the contamination quantile of the scores of at most this many
    # ID fit rows (a seeded uniform sample above it): scoring every row of a
    # large fit set can cost more than the fit itself, and the 5 % quantile of
    # 10,000 rows is within about 0.2 percentage points of rank.
    _offset_sample_size = 10_000

    def __init__(self, *, contamination=0.05):
        self.contamination = contamination

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._requires_labels
        return tags

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the detector on in-distribution data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Fit data, e.g. logits or features of the training set.
        y : array-like of shape (n_samples,), default=None
            Integer labels: the class of ID rows (>= 0), a negative value for
            OOD rows. OOD rows are ignored unless the method uses outliers.

        Returns
        -------
        self : object
            Fitted detector.
        """
        X, y = self._validate_fit_data(X, y, reset=True)
        if self._class_aware and y is not None:
            self.classes_ = np.unique(y[y >= 0])
        self._fit(X, y)
        self._defer_offset(self._offset_sample(self._in_distribution_rows(X, y)))
        return self

    def fit_predict(self, X, y=None, **kwargs):
        """Fit on ``X`` (and ``y``), then predict +1 (ID) / -1 (OOD) for ``X``.

        Unlike ``OutlierMixin.fit_predict`` this passes ``y`` on to ``fit``,
        which class-aware detectors need.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Fit data.
        y : array-like of shape (n_samples,), default=None
            Integer labels (negative = OOD).
        **kwargs : dict
            Passed to ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), dtype int
        """
        return self.fit(X, y, **kwargs).predict(X)

    def _validate_fit_data(self, X, y, reset):
        """Validate ``X`` and labels; drop OOD rows unless the method uses them."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=reset)
        y = self._check_fit_labels(X, y)
        if y is not None and not self._uses_outliers:
            id_rows = y >= 0
            if not id_rows.all():  # no copy of the usual all-ID fit set
                X, y = X[id_rows], y[id_rows]
        return X, y

    def _in_distribution_rows(self, X, y):
        """The ID rows of validated fit data (already all of them, without a
        copy, unless the method keeps OOD rows)."""
        return X if y is None or not self._uses_outliers else X[y >= 0]

    def _check_fit_labels(self, X, y):
        if y is None:
            if self._requires_labels:
                raise ValueError(
                    f"{type(self).__name__} requires y to be passed, but the target "
                    "y is None."
                )
            return None
        y = check_ood_labels(y, X.shape[0])
        if not np.any(y >= 0):
            raise ValueError(
                "y marks every row as out-of-distribution (label < 0); fit needs "
                "in-distribution rows (label >= 0)."
            )
        return y

    def _fit(self, X, y):
        """Learn the detector's statistics; no-op for score-only methods."""

    def _score(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _offset_row_indices(self, n_rows):
        """Which ID fit rows set ``offset_``: all, or a seeded uniform sample."""
        if n_rows <= self._offset_sample_size:
            return slice(None)
        rng = np.random.default_rng(0)
        return np.sort(rng.choice(n_rows, self._offset_sample_size, replace=False))

    def _offset_sample(self, X_id):
        """What ``fit`` keeps of the ID fit rows until ``offset_`` is needed.

        A private copy of the sampled rows (the caller's array may change
        before the first use). Detectors that store their fit rows anyway
        override this together with ``_fit_scores`` (e.g. row indices).
        """
        rows = self._offset_row_indices(len(X_id))
        if isinstance(rows, slice):
            return X_id.copy()
        return np.take(X_id, rows, axis=0)  # a copy; faster than X_id[rows]

    def _fit_scores(self, sample):
        """Scores of the kept ID fit rows that set ``offset_``.

        Detectors that memorise their fit data override this to score each
        fit row without itself, so that the threshold is honest.
        """
        return self._score(sample)

    def _defer_offset(self, sample):
        """Set ``offset_`` lazily: from ``sample`` on first use."""
        self._threshold_ = _DeferredOffset(sample, self.contamination)

    def _offset_from_scores(self, scores, contamination=None):
        if contamination is None:
            contamination = self.contamination
        return float(np.percentile(scores, 100.0 * contamination))

    @property
    def offset_(self):
        threshold = self.__dict__.get("_threshold_")
        if threshold is None:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute 'offset_'"
            )
        if threshold.value is None:
            scores = self._fit_scores(threshold.sample)
            threshold.value = self._offset_from_scores(scores, threshold.contamination)
            threshold.sample = None
        return threshold.value

    @offset_.setter
    def offset_(self, value):
        self._threshold_ = _DeferredOffset(None, None, value=float(value))

    # ---------------------------------------------------------------- score
    def _validate_score_input(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)

    def score_samples(self, X):
        """In-distribution score of each row: higher is more in-distribution.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Same floating dtype as ``X`` (float64 for integer input).
        """
        X = self._validate_score_input(X)
        scores = np.asarray(self._score(X))
        return scores.astype(X.dtype, copy=False)

    def decision_function(self, X):
        """Shifted score: ``score_samples(X) - offset_``; negative means OOD.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        scores = self.score_samples(X)
        return scores - scores.dtype.type(self.offset_)

    def predict(self, X):
        """Predict +1 for in-distribution rows and -1 for OOD rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to classify.

        Returns
        -------
        labels : ndarray of shape (n_samples,), dtype int
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)


class _DeferredOffset:
    """The threshold of a fitted detector, computed on first use.

    Holds the sample of ID fit rows and the ``contamination`` of the fit
    until the value is computed, then only the value. A holder object (not an
    attribute set by ``decision_function``) keeps scoring from changing the
    detector's ``__dict__``.
    """

    __slots__ = ("sample", "contamination", "value")

    def __init__(self, sample, contamination, value=None):
        self.sample = sample
        self.contamination = contamination
        self.value = value

    def __getstate__(self):
        return (self.sample, self.contamination, self.value)

    def __setstate__(self, state):
        self.sample, self.contamination, self.value = state


class PartialFitMixin:
    """``partial_fit`` for detectors whose fit is a sum over rows.

    Mix in *before* :class:`BaseDetector`. The detector implements three hooks
    instead of ``_fit``:

    * ``_reset_stats(X, y)`` creates empty accumulators (float64 sums);
    * ``_update_stats(X, y)`` adds one chunk of ID rows to them;
    * ``_finalize_stats()`` derives the fitted model (means, precisions, ...).

    ``fit`` runs the three once; ``partial_fit`` resets on its first call and
    then only updates and finalizes, so fitting in chunks gives the same model
    as one ``fit`` up to floating-point rounding.

    The threshold ``offset_`` needs scores of the fit rows under the *final*
    model, which streaming cannot revisit. ``partial_fit`` therefore keeps a
    uniform random sample (reservoir sampling, seeded, at most
    ``_offset_sample_size`` = 10,000 ID rows), and ``offset_`` is the
    contamination quantile of its scores under the model of the latest call
    (computed on first use, so a stream of chunks does not rescore the sample
    after each one). While fewer rows than that have been seen, the
    sample holds all of them and ``offset_`` equals the one of ``fit``.
    """

    def _fit(self, X, y):
        self._reset_stats(X, y)
        self._update_stats(X, y)
        self._finalize_stats()
        self._start_offset_sample(self._in_distribution_rows(X, y))

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Update the detector with one chunk of fit data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One chunk of fit data.
        y : array-like of shape (n_samples,), default=None
            Integer labels of the chunk (negative = OOD, ignored).

        Returns
        -------
        self : object
            Updated detector.
        """
        first_call = "_threshold_" not in self.__dict__
        X, y = self._validate_fit_data(X, y, reset=first_call)
        if self._class_aware and y is not None:
            seen = np.unique(y[y >= 0])
            self.classes_ = seen if first_call else np.union1d(self.classes_, seen)
        X_id = self._in_distribution_rows(X, y)
        if first_call:
            self._reset_stats(X, y)
            self._start_offset_sample(X_id[:0])
        self._update_stats(X, y)
        self._finalize_stats()
        self._add_to_offset_sample(X_id)
        self._defer_offset(self._offset_sample_)
        return self

    def _offset_sample(self, X_id):
        # _fit has just drawn the reservoir from the same rows.
        return self._offset_sample_

    def _start_offset_sample(self, X_id):
        """Start the offset sample from a whole fit set: a uniform subset."""
        self._offset_rng_ = np.random.default_rng(1)
        self.n_samples_seen_ = len(X_id)
        self._offset_sample_ = BaseDetector._offset_sample(self, X_id)

    def _add_to_offset_sample(self, X_id):
        """Reservoir sampling (Vitter's algorithm R) of the ID fit rows."""
        room = max(0, self._offset_sample_size - len(self._offset_sample_))
        if room:
            self._offset_sample_ = np.concatenate([self._offset_sample_, X_id[:room]])
            self.n_samples_seen_ += len(X_id[:room])
            X_id = X_id[room:]
        if len(X_id):
            # The t-th row seen replaces a random slot with probability cap / t.
            seen = self.n_samples_seen_ + np.arange(1, len(X_id) + 1)
            slots = np.floor(self._offset_rng_.random(len(X_id)) * seen).astype(int)
            kept = slots < self._offset_sample_size
            for row, slot in zip(X_id[kept], slots[kept]):
                self._offset_sample_[slot] = row
            self.n_samples_seen_ += len(X_id)
