"""Shared base class for every detector in sklearn-ood.

A detector only writes two hooks:

* ``_fit(X, y)`` learns its statistics from the in-distribution (ID) rows;
* ``_score(X)`` returns one score per row, *higher for more in-distribution*.

Everything else -- parameter and input validation, the label convention
(``y < 0`` marks out-of-distribution rows), the ``contamination`` threshold
``offset_``, ``decision_function``, ``predict`` and ``fit_predict`` -- lives
here so that all detectors behave the same way.
"""

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from sklearn_ood._labels import check_ood_labels
from sklearn_ood.exceptions import NoThresholdError
from sklearn_ood.utils import _dask

__all__ = ["BaseDetector", "PartialFitMixin", "check_ood_labels"]

# offset_ is the contamination quantile of the scores of at most this many ID
# fit rows (a seeded uniform sample above it): scoring every row of a large
# fit set can cost more than the fit itself, and the 5 % quantile of 10,000
# rows is within about 0.2 percentage points of rank.
OFFSET_SAMPLE_SIZE = 10_000


def _is_stateless(detector):
    """Whether ``detector`` scores each row by a fixed formula.

    The logit detectors of this package say so with ``_stateless = True``,
    inherited. A class from outside the package that overrides ``fit`` or
    ``_fit`` (a subclass of ``Energy`` that learns from its rows) is not
    stateless unless it declares ``_stateless = True`` itself.
    """
    for cls in type(detector).__mro__:
        if "_stateless" in vars(cls):
            return bool(vars(cls)["_stateless"])
        overrides_fit = "fit" in vars(cls) or "_fit" in vars(cls)
        if overrides_fit and not cls.__module__.startswith("sklearn_ood."):
            return False
    return False


class BaseDetector(OutlierMixin, BaseEstimator):
    """Base class for OOD detectors: validation, label masks, threshold.

    Subclasses implement ``_fit(X, y)`` and ``_score(X)`` and may set the
    class attributes listed in Notes. They list their own hyper-parameters in
    ``_parameter_constraints`` (merged with ``contamination``) and in
    ``__init__`` (which only stores them, as scikit-learn requires).

    Parameters
    ----------
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the in-distribution fit rows that ``predict`` rejects:
        ``offset_`` is that quantile of their scores (of a seeded uniform
        sample of 10,000 of them when there are more). The default 0.05 is the
        95 % true-positive-rate operating point used by OOD papers. ``None``
        learns no threshold: ``score_samples`` works as usual (all that AUROC,
        FPR95 or :func:`~sklearn_ood.metrics.ood_scorer` need) and ``fit``
        scores none of its rows, while ``decision_function`` and ``predict``
        raise :class:`~sklearn_ood.exceptions.NoThresholdError`.

    Attributes
    ----------
    offset_ : float
        Threshold: ``decision_function(X) = score_samples(X) - offset_``.
        Set at the end of ``fit`` (absent when ``contamination=None``); it may
        be assigned to set a threshold by hand.
    n_features_in_ : int
        Number of columns seen during ``fit``.

    See Also
    --------
    PartialFitMixin : Streaming ``partial_fit`` for detectors fitted from sums.
    sklearn.ensemble.IsolationForest : The scikit-learn detector whose
        ``offset_`` convention this base follows.

    Notes
    -----
    As in scikit-learn's ``IsolationForest`` and ``LocalOutlierFactor``,
    ``offset_`` is computed at the end of ``fit`` from the scores of the ID
    fit rows, or of a seeded uniform sample of 10,000 of them when there are
    more. Detectors that memorise their fit rows (``KNN``, ``NNGuide``,
    ``Gram``) score each of those rows without itself, so that the threshold
    is honest. A fitted detector keeps its statistics and nothing else of
    the fit data.

    Subclasses may set these class attributes:

    * ``_requires_labels``: ``fit`` raises when ``y`` is None.
    * ``_uses_outliers``: ``_fit`` receives the OOD rows (``y < 0``) too;
      otherwise they are dropped before ``_fit`` and never influence the
      fitted model.
    * ``_class_aware``: ``fit`` sets ``classes_`` to the sorted unique ID
      labels.
    * ``_stateless``: the score is a fixed function of the row
      (``MaxSoftmax``, ``Energy``, ...), so fitting only validates the input
      and sets ``offset_``.
    * ``_input_kind``: what the detector consumes, read by
      :func:`sklearn_ood.evaluation.evaluate` and the ``sklearn-ood`` command
      to feed it from one feature extraction: ``"logits"``, ``"features"``
      (one layer, the penultimate by default), ``"layers"`` (several layers
      side by side) or ``"inputs"`` (raw inputs through a torch model).
    * ``_family``: the family the documentation and ``sklearn-ood
      benchmark --detectors`` group it under, one of
      ``sklearn_ood._registry.FAMILIES`` (``"logits"``, ``"fitted-logits"``,
      ``"gaussian"``, ``"neighbors"``, ``"head-aware"``,
      ``"activation-shaping"``, ``"learned-centers"``, ``"model"``).
    * ``_needs_special_model``: None, or why the detector cannot score a
      plain classifier fitted on its own training rows (e.g. it needs an
      extra background logit, or held-out calibration data); ``sklearn-ood
      benchmark`` then lists it as not applicable with that reason.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.base import BaseDetector
    >>> class MinusNorm(BaseDetector):
    ...     def _score(self, X):
    ...         return -np.linalg.norm(X, axis=1)
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> det = MinusNorm(contamination=0.1).fit(X)
    >>> float(np.mean(det.predict(X) == -1))
    0.1
    """

    _parameter_constraints: dict = {
        "contamination": [Interval(Real, 0, 0.5, closed="right"), None],
    }

    _requires_labels = False
    _uses_outliers = False
    _class_aware = False
    _stateless = False
    _input_kind = "features"
    _family = None
    _needs_special_model = None

    _offset_sample_size = OFFSET_SAMPLE_SIZE

    def __init__(self, *, contamination=0.05):
        self.contamination = contamination

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._requires_labels
        return tags

    def __getstate__(self):
        # A fitted attribute held on a Dask cluster (a KNN bank fitted on a
        # dask array) is gathered, so that the pickle stands alone.
        return _dask.computed_state(super().__getstate__())

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the detector on in-distribution data.

        A ``dask.array`` ``X`` (rows chunked; ``y`` a dask or NumPy array
        of the same length) is fitted on its cluster by the detectors with
        ``partial_fit`` and by ``KNN`` and ``NNGuide`` (the ``dask`` extra):
        each block's statistics are computed on a worker and merged, and the
        fitted detector is a plain in-memory estimator equal to an in-memory
        fit up to rounding (``offset_`` comes from the same seeded sample of
        rows). ``KNN`` and ``NNGuide`` keep ``bank_`` on the cluster as a
        dask array, one shard per block, which each search visits on its
        worker; pickling such a detector gathers the bank. The fixed-formula
        detectors (``MaxSoftmax``, ``Energy``, ...) validate the blocks on
        the workers and learn ``offset_`` alone. Other detectors raise a
        ``TypeError`` (fit them on ``X.compute()``).

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
        if _dask.is_dask_collection(X) or _dask.is_dask_collection(y):
            return _dask.fit(self, X, y)
        X, y = self._validate_fit_data(X, y, reset=True)
        if self._class_aware and y is not None:
            self.classes_ = np.unique(y[y >= 0])
        fit_scores = self._fit(X, y)
        self._set_offset(self._in_distribution_rows(X, y), fit_scores)
        return self

    def fit_predict(self, X, y=None):
        """Fit on ``X`` (and ``y``), then predict +1 (ID) / -1 (OOD) for ``X``.

        Unlike ``OutlierMixin.fit_predict`` this passes ``y`` on to ``fit``,
        which class-aware detectors need.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Fit data.
        y : array-like of shape (n_samples,), default=None
            Integer labels (negative = OOD).

        Returns
        -------
        labels : ndarray of shape (n_samples,), dtype int
            +1 for the rows kept as in-distribution, -1 for the rejected ones.
        """
        return self.fit(X, y).predict(X)

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
        """Learn the detector's statistics; no-op for score-only methods.

        May return the (honest) scores of every ID fit row when the fit
        computes them anyway (e.g. leave-one-out); ``offset_`` then takes its
        sampled rows from them instead of scoring those rows again.
        """

    def _score(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------ threshold
    def _offset_row_indices(self, n_rows):
        """Which ID fit rows set ``offset_``: all, or a seeded uniform sample."""
        if n_rows <= self._offset_sample_size:
            return slice(None)
        rng = np.random.default_rng(0)
        return np.sort(rng.choice(n_rows, self._offset_sample_size, replace=False))

    def _fit_scores(self, X_id, rows):
        """Scores of the ID fit rows ``X_id[rows]`` under the fitted model.

        Detectors that memorise their fit data override this to score each
        of those rows without itself, so that the threshold is honest.
        """
        return self._score(_take_rows(X_id, rows))

    def _set_offset(self, X_id, fit_scores=None):
        """End of ``fit``: ``offset_`` from (a sample of) the ID fit rows."""
        self.__dict__.pop("offset_", None)
        if self.contamination is not None and len(X_id):
            rows = self._offset_row_indices(len(X_id))
            if fit_scores is None:
                scores = self._fit_scores(X_id, rows)
            else:
                scores = np.asarray(fit_scores)[rows]
            self.offset_ = _quantile(scores, self.contamination)

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
            The score of each row, in the floating dtype of ``X`` (float64
            for integer input). For a ``dask.array`` ``X``, a dask array
            computed block by block on the workers (so are
            ``decision_function`` and ``predict``).
        """
        if _dask.is_dask_collection(X):
            return _dask.score(self, X, "score_samples")
        X = self._validate_score_input(X)
        scores = np.asarray(self._score(X))
        return scores.astype(X.dtype, copy=False)

    def _check_offset(self):
        check_is_fitted(self)
        if "offset_" not in self.__dict__:
            name = type(self).__name__
            raise NoThresholdError(
                f"This {name} was fitted with contamination=None, so it learned no "
                "threshold: score_samples works, but decision_function and predict "
                "need offset_. Refit with contamination set (e.g. "
                f"{name}(contamination=0.05)), or assign offset_ by hand."
            )
        return self.offset_

    def decision_function(self, X):
        """Shifted score: ``score_samples(X) - offset_``; negative means OOD.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
            ``score_samples(X) - offset_``: negative for the rows ``predict``
            calls OOD.
        """
        if _dask.is_dask_collection(X):
            return _dask.score(self, X, "decision_function")
        offset = self._check_offset()
        scores = self.score_samples(X)
        return scores - scores.dtype.type(offset)

    def predict(self, X):
        """Predict +1 for in-distribution rows and -1 for OOD rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to classify.

        Returns
        -------
        labels : ndarray of shape (n_samples,), dtype int
            +1 where ``decision_function(X) >= 0``, -1 elsewhere.
        """
        if _dask.is_dask_collection(X):
            return _dask.score(self, X, "predict")
        return np.where(self.decision_function(X) >= 0, 1, -1)


def _take_rows(X, rows):
    """``X[rows]`` for a slice (a view) or indices (``np.take``, the faster copy);
    ``X[rows]`` for the rows of a Dask fit, gathered on demand."""
    if isinstance(rows, slice) or not isinstance(X, np.ndarray):
        return X[rows]
    return np.take(X, rows, axis=0)


def _merged_sums(a, b):
    """The merge of two partial statistics (see ``PartialFitMixin``)."""
    if isinstance(a, list):
        return [_merged_sums(x, z) for x, z in zip(a, b, strict=True)]
    if hasattr(a, "merged"):
        return a.merged(b)
    with np.errstate(over="ignore", invalid="ignore"):
        total = a + b
    if not np.all(np.isfinite(total)):
        raise ValueError(
            "The merged sums of the fit rows overflowed float64: the features "
            "hold values too large. Rescale the features (e.g. fit a "
            "StandardScaler on the in-distribution rows) before fitting."
        )
    return total


def _quantile(scores, contamination):
    """The ``contamination`` quantile of ``scores`` (linear interpolation)."""
    return float(np.percentile(scores, 100.0 * contamination))


class PartialFitMixin:
    """``partial_fit`` for detectors whose fit is a sum over rows.

    Mix in *before* :class:`BaseDetector`. The detector implements three hooks
    instead of ``_fit``:

    * ``_reset_stats(X, y)`` creates empty accumulators (float64 sums);
    * ``_update_stats(X, y)`` adds one chunk of ID rows to them;
    * ``_finalize_stats()`` derives the fitted model (means, precisions, ...).

    ``fit`` runs the three once; ``partial_fit`` resets on its first call and
    then only updates and finalizes, so fitting in chunks gives the same model
    as one ``fit`` up to floating-point rounding. ``_update_stats`` and
    ``_finalize_stats`` rebind the fitted attributes instead of updating
    arrays in place: ``partial_fit`` restores the attributes of the previous
    call when a chunk is refused, so a refused chunk leaves the detector
    exactly as it was.

    Threshold of a stream. A stream cannot be revisited, and the fitted
    detector keeps no fit rows, so ``offset_`` is the contamination quantile
    of a uniform sample (reservoir sampling, seeded) of at most 10,000
    *scores*: each chunk's ID rows are scored under the model updated with
    that chunk, and ``offset_`` is recomputed at the end of every call. Rows
    of early chunks are thus scored by a model fitted on fewer rows; as the
    statistics settle the sampled scores approach those of the final model
    (a ``fit`` on the whole set scores its sample under the final model).
    The sample costs at most 10,000 floats per score term (``_offset_terms_``)
    whatever the number of features. With ``contamination=None`` no sample
    is kept (unless the model itself needs it, as ViM's matched scale does)
    and no row is scored; setting a contamination later starts the sample
    from the rows of the next ``partial_fit`` call. ``n_samples_seen_``
    counts the ID rows seen (set before ``_update_stats``, so that the hooks
    can divide by it). A failed ``fit`` leaves no stream to continue: the
    next ``partial_fit`` starts afresh.

    Merging. ``_merge_stats(other)`` adds the statistics of another partial
    fit (plain sums named in ``_summed_stats``; the Gaussian family's
    pairwise update), so that blocks fitted apart, e.g. on Dask workers
    (``fit`` of a ``dask.array``), are tree-reduced into the statistics of
    one fit.
    """

    # Names of the fitted attributes that are sums over the rows: arrays or
    # floats (added), objects with a ``merged(other)`` method (the Gaussian
    # family's ClassStats), or lists of those. ``_merge_stats`` merges them.
    _summed_stats = ()

    def fit(self, X, y=None):
        try:
            return super().fit(X, y)
        except BaseException:
            self.__dict__.pop("n_samples_seen_", None)
            raise

    fit.__doc__ = BaseDetector.fit.__doc__

    def _merge_stats(self, other):
        """Add the statistics of ``other`` to this detector's, exactly.

        ``other`` has the same parameters and was started on the same
        feature width (``_reset_stats`` then ``_update_stats``, or a whole
        ``fit``) on other rows. The attributes named in ``_summed_stats``
        and ``n_samples_seen_`` are rebound to new objects (neither detector
        is changed in place); ``_finalize_stats`` then derives the model of
        the rows of both, as one ``fit`` on them would up to rounding. This
        is what lets blocks be fitted apart (on Dask workers) and
        tree-reduced.
        """
        for name in self._summed_stats:
            merged = _merged_sums(getattr(self, name), getattr(other, name))
            setattr(self, name, merged)
        self.n_samples_seen_ = self.n_samples_seen_ + other.n_samples_seen_

    def _fit(self, X, y):
        self.n_samples_seen_ = len(self._in_distribution_rows(X, y))
        self._reset_stats(X, y)
        self._update_stats(X, y)
        self._finalize_stats()

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Update the detector with one chunk of fit data.

        A chunk that is refused (a ``ValueError`` for its values or labels,
        or statistics that leave the float range) leaves the detector exactly
        as it was before the call.

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
        first_call = not hasattr(self, "n_samples_seen_")
        saved = dict(self.__dict__)
        try:
            self._partial_fit(X, y, first_call)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        return self

    def _partial_fit(self, X, y, first_call):
        X, y = self._validate_fit_data(X, y, reset=first_call)
        if self._class_aware and y is not None:
            seen = np.unique(y[y >= 0])
            self.classes_ = seen if first_call else np.union1d(self.classes_, seen)
        X_id = self._in_distribution_rows(X, y)
        n_before = 0 if first_call else self.n_samples_seen_
        if first_call:
            self._reset_stats(X, y)
            self._offset_terms_ = None
        # Counted before the update, so that _finalize_stats can divide by it.
        self.n_samples_seen_ = n_before + len(X_id)
        self._update_stats(X, y)
        self._finalize_stats()
        if self._keeps_offset_terms:
            self._add_offset_terms(self._threshold_terms(X_id), n_before)
        self._set_offset_from_terms()

    # ------------------------------------------------------------ threshold
    def _threshold_terms(self, X_id):
        """Per-row terms of the score that ``offset_`` needs (float64).

        The scores themselves by default. A detector whose score combines
        per-row terms with weights that can change after ``fit``
        (``MultiMahalanobis.fit_layer_weights``, ViM's matched
        ``residual_scale_``) returns the terms, shape ``(n_rows, n_terms)``,
        and combines them in ``_scores_from_terms``.
        """
        return np.asarray(self._score(X_id), dtype=np.float64)

    def _scores_from_terms(self, terms):
        return terms

    @property
    def _keeps_offset_terms(self):
        """Whether the reservoir of score terms is kept and extended."""
        return self.contamination is not None

    def _set_offset(self, X_id, fit_scores=None):
        # End of fit: the sample of the fit rows, scored under the final model,
        # is the reservoir that later partial_fit calls extend.
        self._offset_terms_ = None
        if self._keeps_offset_terms:
            rows = self._offset_row_indices(len(X_id))
            self._offset_terms_ = self._threshold_terms(_take_rows(X_id, rows))
        self._set_offset_from_terms()

    def _set_offset_from_terms(self):
        self.__dict__.pop("offset_", None)
        terms = self._offset_terms_
        if self.contamination is not None and terms is not None and len(terms):
            scores = self._scores_from_terms(self._offset_terms_)
            self.offset_ = _quantile(scores, self.contamination)

    def _add_offset_terms(self, terms, n_before):
        """Reservoir sampling (Vitter's algorithm R) of the rows' score terms.

        ``n_before`` rows were seen before these. Builds a new array (the kept
        one is never updated in place, so that a refused chunk can be undone).
        The generator is seeded by ``n_before``, so the sample depends on the
        chunks only.
        """
        cap = self._offset_sample_size
        kept = self._offset_terms_
        if kept is None:
            kept = terms[:0]
        room = max(0, cap - len(kept))
        kept = np.concatenate([kept, terms[:room]])
        rest = terms[room:]
        first = n_before + min(room, len(terms))
        if len(rest):
            # The t-th row seen replaces a random slot with probability cap / t;
            # a later row overwrites an earlier one in the same slot.
            seen = first + np.arange(1, len(rest) + 1)
            rng = np.random.default_rng([1, first])
            slots = np.floor(rng.random(len(rest)) * seen).astype(np.int64)
            hit = slots < cap
            kept[slots[hit]] = rest[hit]
        self._offset_terms_ = kept
