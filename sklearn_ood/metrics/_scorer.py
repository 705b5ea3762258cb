"""scikit-learn scorers for OOD detection metrics (``scoring=`` in model selection)."""

from sklearn_ood.metrics._ranking import (
    _AUPR_METHODS,
    _POSITIVE,
    _check_option,
    _check_tpr,
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    fpr_at_tpr,
)

__all__ = ["get_ood_scorer_names", "ood_scorer"]


def _check_method(value):
    return _check_option("method", value, _AUPR_METHODS)


def _check_positive(value):
    return _check_option("positive", value, _POSITIVE)


# name -> (metric, fixed kwargs, greater_is_better, {allowed kwarg: validator});
# as in scikit-learn, a lower-is-better metric is negated and named "neg_..."
_SCORERS = {
    "auroc": (auroc, {}, True, {}),
    "aupr_in": (aupr_in, {}, True, {"method": _check_method}),
    "aupr_out": (aupr_out, {}, True, {"method": _check_method}),
    "neg_fpr95": (fpr_at_tpr, {"tpr": 0.95}, False, {"positive": _check_positive}),
    "neg_fpr_at_tpr": (
        fpr_at_tpr,
        {},
        False,
        {"tpr": _check_tpr, "positive": _check_positive},
    ),
    "neg_detection_error": (detection_error, {}, False, {}),
}
# the names before the "neg_" prefix (unreleased, so no deprecation period)
_RENAMED = {
    "fpr95": "neg_fpr95",
    "fpr_at_tpr": "neg_fpr_at_tpr",
    "detection_error": "neg_detection_error",
}


def get_ood_scorer_names():
    """List the names of the metrics that :func:`ood_scorer` accepts.

    Lower-is-better metrics are negated and named ``neg_...``, as
    scikit-learn's ``neg_log_loss``, so that greater is always better.

    Returns
    -------
    list of str
        Sorted metric names.

    See Also
    --------
    ood_scorer : Build a scorer from one of these names.

    Examples
    --------
    >>> from sklearn_ood.metrics import get_ood_scorer_names
    >>> get_ood_scorer_names()  # doctest: +NORMALIZE_WHITESPACE
    ['aupr_in', 'aupr_out', 'auroc', 'neg_detection_error', 'neg_fpr95',
     'neg_fpr_at_tpr']
    """
    return sorted(_SCORERS)


def _ood_scores(estimator, X):
    """Scores of ``estimator`` on ``X``, higher = more in-distribution."""
    for method in ("score_samples", "decision_function"):
        func = getattr(estimator, method, None)
        if func is not None:
            return func(X)
    raise TypeError(
        f"{type(estimator).__name__} has neither score_samples nor "
        "decision_function; an OOD scorer needs one of them (higher = more "
        "in-distribution)."
    )


class _OODScorer:
    """Callable ``scorer(estimator, X, y)`` built by :func:`ood_scorer`."""

    def __init__(self, metric, sign, kwargs, name=None):
        self._metric = metric
        self._sign = sign
        self._kwargs = kwargs
        self._name = name

    def __call__(self, estimator, X, y_true, sample_weight=None):
        """Score ``estimator`` on ``X`` against the OOD labels ``y_true``.

        Parameters
        ----------
        estimator : object
            Fitted detector or pipeline with ``score_samples`` (preferred) or
            ``decision_function``, higher for more in-distribution.
        X : array-like of shape (n_samples, n_features)
            Test data.
        y_true : array-like of shape (n_samples,)
            Integer labels: ``>= 0`` for ID samples, ``< 0`` for OOD samples.
        sample_weight : None
            Not supported; must be None.

        Returns
        -------
        float
            The metric, negated for lower-is-better metrics.
        """
        if sample_weight is not None:
            raise ValueError(f"{self!r} does not support sample_weight.")
        if y_true is None:
            raise ValueError(
                f"{self!r} needs the labels y (>= 0 for ID, < 0 for OOD samples); "
                "pass y to fit / cross_validate."
            )
        scores = _ood_scores(estimator, X)
        return self._sign * float(self._metric(y_true, scores, **self._kwargs))

    # scikit-learn asks every scorer in a multi-metric dict this question
    # when fit gets sample_weight; the answer keeps the weights away.
    def _accept_sample_weight(self):
        return False

    def __repr__(self):
        if self._name is not None:
            args = [repr(self._name)]
            fixed = _SCORERS[self._name][1]
        else:
            args = [getattr(self._metric, "__name__", repr(self._metric))]
            if self._sign < 0:
                args.append("greater_is_better=False")
            fixed = {}
        args += [f"{k}={v!r}" for k, v in self._kwargs.items() if k not in fixed]
        return f"ood_scorer({', '.join(args)})"


def ood_scorer(metric, *, greater_is_better=None, **kwargs):
    """Make a scikit-learn scorer from an OOD detection metric.

    The scorer is a callable ``scorer(estimator, X, y)``, usable as
    ``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_validate` and friends, alone or as
    a value of a multi-metric dict. It scores with
    ``estimator.score_samples(X)`` (``decision_function(X)`` when there is no
    ``score_samples``; both rank samples the same way for sklearn-ood
    detectors), so it works for detectors and for pipelines ending in one.
    ``y`` holds the OOD labels: ``>= 0`` for ID, ``< 0`` for OOD samples.

    Lower-is-better metrics are returned **negated**, so that a higher score
    is always better, and their names say so with a ``neg_`` prefix, as
    scikit-learn's ``"neg_log_loss"``: ``"neg_fpr95"``, ``"neg_fpr_at_tpr"``
    and ``"neg_detection_error"`` (and a callable with
    ``greater_is_better=False``). An FPR95 of 0.2 is scored -0.2, so a
    search's ``best_score_`` of -0.12 means an FPR of 12 % at 95 % TPR.

    Cross-validation over mixed ID/OOD data needs every test fold to hold
    both ID and OOD rows. Use ``cv=StratifiedKFold(n_splits, shuffle=True)``:
    for a detector (not a classifier) an integer ``cv`` means a
    non-shuffled :class:`~sklearn.model_selection.KFold`, which puts OOD rows
    appended at the end of the data into one fold and leaves the other folds
    without any; the metric then raises ``ValueError`` (or, with the
    default ``error_score=np.nan``, the fold is scored NaN with a warning).

    Parameters
    ----------
    metric : str or callable
        One of ``"auroc"``, ``"aupr_in"``, ``"aupr_out"``, ``"neg_fpr95"``
        (:func:`fpr_at_tpr` with ``tpr=0.95``, negated),
        ``"neg_fpr_at_tpr"`` or ``"neg_detection_error"`` (see
        :func:`get_ood_scorer_names`), or a callable
        ``metric(y_true, scores, **kwargs)`` returning a float.
    greater_is_better : bool, default=None
        For a callable ``metric``: whether higher metric values are better
        (default True); if False the scorer negates the metric. For a named
        metric it is fixed; passing the other value raises ``ValueError``.
    **kwargs
        Keyword arguments of the metric: ``method`` for ``"aupr_in"`` and
        ``"aupr_out"``; ``positive`` for ``"neg_fpr95"``; ``tpr`` and
        ``positive`` for ``"neg_fpr_at_tpr"``; anything for a callable.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)`` returning a float, higher is better.

    Raises
    ------
    ValueError
        For an unknown metric name (the message lists the valid ones; for
        ``"fpr95"``, ``"fpr_at_tpr"`` and ``"detection_error"`` it names the
        ``neg_`` scorer to use instead), a
        keyword argument the metric does not take, an invalid argument value
        or a conflicting ``greater_is_better``.

    See Also
    --------
    ood_report : Every metric above in one dictionary.
    get_ood_scorer_names : The metric names ``ood_scorer`` accepts.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import IsolationForest
    >>> from sklearn.model_selection import GridSearchCV, StratifiedKFold
    >>> from sklearn_ood.metrics import ood_scorer
    >>> ood_scorer("neg_fpr_at_tpr", tpr=0.9)
    ood_scorer('neg_fpr_at_tpr', tpr=0.9)
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(size=(60, 2)), rng.normal(6, 1, size=(30, 2))])
    >>> y = np.r_[np.zeros(60, dtype=int), -np.ones(30, dtype=int)]
    >>> search = GridSearchCV(
    ...     IsolationForest(random_state=0),
    ...     {"n_estimators": [10, 50]},
    ...     scoring={
    ...         "auroc": ood_scorer("auroc"),
    ...         "neg_fpr95": ood_scorer("neg_fpr95"),
    ...     },
    ...     refit="auroc",
    ...     cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ... ).fit(X, y)
    >>> bool(np.all(search.cv_results_["mean_test_neg_fpr95"] <= 0))  # -FPR95
    True
    """
    if callable(metric):
        if greater_is_better is None:
            greater_is_better = True
        sign = 1 if greater_is_better else -1
        return _OODScorer(metric, sign, dict(kwargs))

    if isinstance(metric, str) and metric in _RENAMED:
        new = _RENAMED[metric]
        raise ValueError(
            f"The OOD scorer {metric!r} is now named {new!r}: it returns the "
            "negated metric (higher is better), and scikit-learn names such "
            f"scorers 'neg_...', as 'neg_log_loss'. Use ood_scorer({new!r}); "
            f"the metric itself is {_SCORERS[new][0].__name__}()."
        )
    if not isinstance(metric, str) or metric not in _SCORERS:
        valid = ", ".join(repr(name) for name in get_ood_scorer_names())
        raise ValueError(
            f"Unknown OOD metric {metric!r}; valid names are {valid}, or pass a "
            "callable metric(y_true, scores, **kwargs)."
        )
    func, fixed, higher_better, allowed = _SCORERS[metric]
    if greater_is_better is not None and bool(greater_is_better) != higher_better:
        raise ValueError(
            f"greater_is_better={greater_is_better!r} contradicts the metric "
            f"{metric!r}, which is {'higher' if higher_better else 'lower'}-is-better"
            "; the scorer always returns a higher-is-better value "
            f"({'the metric' if higher_better else 'the negated metric'})."
        )
    checked = {}
    for key, value in kwargs.items():
        if key not in allowed:
            names = ", ".join(repr(k) for k in allowed) or "none"
            raise ValueError(
                f"ood_scorer({metric!r}) got an unexpected keyword argument "
                f"{key!r}; it accepts: {names}."
            )
        checked[key] = allowed[key](value)
    return _OODScorer(func, 1 if higher_better else -1, {**fixed, **checked}, metric)
