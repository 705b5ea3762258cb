"""``evaluate``: many detectors on one feature extraction, one results table."""

import sys
import time

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch
from sklearn.utils._param_validation import HasMethods, validate_params

from sklearn_ood.evaluation._plan import (
    ALL_COLUMNS,
    INPUTS,
    FeatureBank,
    check_detectors,
    check_test_sets,
    resolve_sources,
)
from sklearn_ood.metrics import ood_report

__all__ = ["evaluate"]

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error")
COLUMNS = ("detector", "ood_set", *METRICS, "fit_seconds", "score_seconds", "error")


@validate_params(
    {
        "detectors": [dict, list],
        "X_fit": "no_validation",  # arrays, tensors or torch Datasets
        "y_fit": "no_validation",  # checked by each detector's fit
        "test_sets": [dict],
        "transformer": [HasMethods(["fit", "transform", "get_params"]), None],
        "id_set": [str],
        "return_details": ["boolean"],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=False,
)
def evaluate(
    detectors,
    X_fit,
    y_fit,
    test_sets,
    transformer=None,
    *,
    id_set="id",
    return_details=False,
    verbose=0,
):
    """Fit and score many detectors on one feature extraction; one table.

    Every detector is fitted on ``X_fit`` (with ``y_fit``), scores the
    in-distribution (ID) test set and every OOD test set, and is rated on
    each OOD set against the ID set with
    :func:`~sklearn_ood.metrics.ood_report` (ID is the positive class). With a
    ``transformer`` such as
    :class:`~sklearn_ood.torch.TorchFeatureTransformer`, each input set goes
    through the model once, with every layer any detector needs taken from
    that one forward pass (see Notes), so that ``N`` detectors cost one
    extraction plus their own fit and scoring time, not ``N`` extractions.
    A detector that raises is reported with its error and NaN metrics; the
    others still run.

    Parameters
    ----------
    detectors : dict or list
        ``name -> detector`` or ``name -> (detector, layer)``. A detector is
        an unfitted scikit-learn estimator with ``fit`` and ``score_samples``
        (higher = more in-distribution), e.g. any detector of sklearn-ood;
        it is cloned, never modified. ``layer`` says what it is fed: what
        ``TorchFeatureTransformer``'s ``layer`` accepts (``"logits"``,
        ``"penultimate"``, a submodule name, or a list of those, side by
        side in that order), or ``"inputs"`` for the raw inputs. Without
        ``layer``, the detector's kind decides: logit detectors get
        ``"logits"``, feature detectors ``"penultimate"``, multi-layer
        detectors (:class:`~sklearn_ood.detectors.MultiMahalanobis`) the
        transformer's own ``layer``, and model detectors
        (:class:`~sklearn_ood.torch.ODIN`, ``MCDropout``, ``GradNorm``,
        ...) the raw inputs. A list of detectors (or of pairs) is named by
        class name, which must then be unique.
    X_fit : array-like, torch.Tensor or torch Dataset
        Inputs the detectors are fitted on (through the transformer when
        there is one), e.g. the ID training images.
    y_fit : array-like of shape (n_samples,) or None
        Labels of ``X_fit``: the class (``>= 0``) of ID rows, ``< 0`` for
        OOD rows. Passed to every detector's ``fit``; detectors that do not
        use labels ignore them.
    test_sets : dict of str -> array-like, torch.Tensor or torch Dataset
        The ID test set under the key ``id_set`` and each OOD set under its
        own name, in the order of the table. Any input the transformer (or,
        for raw-input detectors, the detector) accepts; the number of
        samples of a set is that of its scores.
    transformer : estimator or None, default=None
        Turns inputs into the detectors' features. A transformer with a
        ``layer`` parameter (:class:`~sklearn_ood.torch.TorchFeatureTransformer`)
        is cloned with ``layer`` set to the union of the layers the
        detectors need, and each detector gets its columns through the
        fitted clone's ``feature_blocks_``. Any other scikit-learn
        transformer is cloned, fitted on ``X_fit`` and its whole output goes
        to every detector that does not take raw inputs. ``None``: every
        detector gets the arrays as given (asking for a layer is then an
        error).
    id_set : str, default="id"
        Key of the ID test set in ``test_sets``; every other key is an OOD
        set.
    return_details : bool, default=False
        Also return the scores, the fitted detectors and the timings.
    verbose : int, default=0
        Above 0, one progress line per detector on stderr; above 1, also one
        line per extracted input set.

    Returns
    -------
    table : pandas.DataFrame or list of dict
        A DataFrame when pandas is installed, else a list of dicts with the
        same keys. One row per detector and OOD set, then a row with
        ``ood_set="mean"`` per detector (mean of each metric over its OOD
        sets). Columns: ``detector``, ``ood_set``, ``auroc``, ``aupr_in``,
        ``aupr_out``, ``fpr95``, ``detection_error`` (as
        :func:`~sklearn_ood.metrics.ood_report`), ``fit_seconds`` (the
        detector's fit, on features already extracted), ``score_seconds``
        (scoring that OOD set; on the ``"mean"`` row, all the detector's
        scoring, ID set included) and ``error`` (None, or ``"ExceptionType:
        message"`` for a detector that raised: its metrics are NaN). The
        DataFrame's ``attrs`` hold ``extraction_seconds`` and
        ``fit_extraction_seconds`` as in ``details``.
    details : Bunch
        Only with ``return_details=True``:

        * ``scores``: ``{detector: {set name: ndarray}}``, ID set included;
        * ``detectors``: ``{name: fitted detector}`` (clones of yours);
        * ``errors``: ``{name: "ExceptionType: message"}`` of failed detectors
          (absent from ``scores`` and ``detectors``);
        * ``extraction_seconds``: ``{set name: seconds}`` spent in the
          transformer per test set (0.0 where nothing was extracted);
        * ``fit_extraction_seconds``: fitting the transformer and
          transforming ``X_fit``;
        * ``transformer``: the fitted clone of ``transformer`` (None when no
          detector needed it);
        * ``layers``: ``{name: what it was fed}``: a list of layer names,
          ``"inputs"`` (raw inputs, or the arrays as given without a
          transformer) or ``"output"`` (the whole output of a transformer
          without ``layer``).

    See Also
    --------
    sklearn_ood.metrics.ood_report : The metrics of one detector on one set.
    sklearn_ood.torch.TorchFeatureTransformer : Logits and layer features of a
        torch model.
    sklearn_ood.all_detectors : Every detector class, to evaluate them all.

    Notes
    -----
    **One extraction.** With a layer-aware transformer, the layers every
    detector needs are gathered, in order and without repeats (e.g.
    ``["logits", "penultimate", "block2"]``), into one clone of the
    transformer. It is fitted once on ``X_fit`` and transforms ``X_fit`` and
    each test set exactly once: one forward pass of the model per batch,
    however many detectors. Each detector then gets a C-contiguous copy of
    its own blocks (side by side, in the order it asked), which is the array
    a ``Pipeline(TorchFeatureTransformer(model, layer=its layer),
    detector)`` would pass it, so its scores are the same. A detector with a
    ``groups`` parameter left at None (``MultiMahalanobis``) fed several
    layers gets ``groups`` set to their widths, on its clone. Detectors on
    raw inputs run the model themselves.

    Exceptions raised by the transformer stop the evaluation (they concern
    every detector); ``Exception`` raised by a detector's ``fit``,
    ``score_samples`` or its metrics (e.g. NaN scores) is caught and
    reported, while ``KeyboardInterrupt`` is not.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import KNN, Mahalanobis
    >>> from sklearn_ood.evaluation import evaluate
    >>> rng = np.random.default_rng(0)
    >>> means = 4 * np.eye(3)
    >>> y_fit = rng.integers(0, 3, size=300)
    >>> X_fit = means[y_fit] + rng.normal(size=(300, 3))
    >>> test_sets = {
    ...     "id": means[rng.integers(0, 3, size=100)] + rng.normal(size=(100, 3)),
    ...     "far": rng.normal(size=(100, 3)) + 10,
    ...     "between": rng.normal(size=(100, 3)) + 4 / 3,
    ... }
    >>> detectors = {"Mahalanobis": Mahalanobis(), "KNN": KNN(n_neighbors=5)}
    >>> table = evaluate(detectors, X_fit, y_fit, test_sets)
    >>> table[["detector", "ood_set", "auroc", "fpr95"]].round(2)
          detector  ood_set  auroc  fpr95
    0  Mahalanobis      far   1.00   0.00
    1  Mahalanobis  between   0.81   0.61
    2  Mahalanobis     mean   0.90   0.30
    3          KNN      far   1.00   0.00
    4          KNN  between   0.83   0.56
    5          KNN     mean   0.91   0.28
    """
    entries = check_detectors(detectors)
    ood_sets = check_test_sets(test_sets, id_set)
    union = resolve_sources(entries, transformer)
    bank = FeatureBank(transformer, union, [e.source for e in entries])
    bank.fit(X_fit, y_fit, test_sets, verbose=verbose)

    rows, results = [], {}
    for i, entry in enumerate(entries, start=1):
        result = _run_detector(entry, bank, y_fit, id_set, ood_sets)
        results[entry.name] = result
        rows.extend(_rows(entry.name, result, ood_sets))
        if verbose > 0:
            _print_progress(entry.name, i, len(entries), result, rows[-1])

    table = _table(rows, bank)
    if not return_details:
        return table
    ok = {name: r for name, r in results.items() if r.error is None}
    details = Bunch(
        scores={name: r.scores for name, r in ok.items()},
        detectors={name: r.detector for name, r in ok.items()},
        errors={name: r.error for name, r in results.items() if r.error is not None},
        extraction_seconds=dict(bank.seconds),
        fit_extraction_seconds=bank.fit_seconds,
        transformer=bank.fitted_transformer,
        layers={e.name: _describe_source(e.source) for e in entries},
    )
    return table, details


# -------------------------------------------------------------- one detector
class _Result:
    def __init__(self, detector):
        self.detector = detector
        self.fit_seconds = np.nan
        self.score_seconds = {}
        self.scores = {}
        self.metrics = {}
        self.error = None


def _run_detector(entry, bank, y_fit, id_set, ood_sets):
    """Fit, score every set and rate every OOD set; errors are recorded."""
    detector = clone(entry.estimator)
    widths = bank.group_widths(entry.source)
    params = detector.get_params(deep=False)
    if widths is not None and len(widths) > 1 and params.get("groups", 0) is None:
        detector.set_params(groups=widths)
    result = _Result(detector)
    try:
        start = time.perf_counter()
        detector.fit(bank.get(bank.FIT, entry.source), y_fit)
        result.fit_seconds = time.perf_counter() - start
        for name in (id_set, *ood_sets):
            X = bank.get(name, entry.source)
            start = time.perf_counter()
            scores = detector.score_samples(X)
            result.score_seconds[name] = time.perf_counter() - start
            result.scores[name] = _check_scores(scores, X, name)
        id_scores = np.asarray(result.scores[id_set], dtype=np.float64)
        for name in ood_sets:
            ood_scores = np.asarray(result.scores[name], dtype=np.float64)
            # Labels: any class >= 0 marks ID rows, -1 the OOD rows.
            y = np.r_[np.zeros(len(id_scores), int), -np.ones(len(ood_scores), int)]
            result.metrics[name] = ood_report(y, np.r_[id_scores, ood_scores])
    except Exception as exc:  # noqa: BLE001 - reported in the table, see Notes
        result.error = f"{type(exc).__name__}: {exc}"
        result.metrics = {}
    return result


def _check_scores(scores, X, name):
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(
            f"score_samples returned an array of shape {scores.shape} for set "
            f"{name!r}; expected one score per sample."
        )
    shape = getattr(X, "shape", None)  # arrays and tensors; a Dataset: no check
    if shape is not None and len(shape) and shape[0] != len(scores):
        raise ValueError(
            f"score_samples returned {len(scores)} scores for the {shape[0]} "
            f"samples of set {name!r}."
        )
    return scores


def _describe_source(source):
    if source == INPUTS:
        return INPUTS
    if source == ALL_COLUMNS:
        return "output"
    return list(source)


# -------------------------------------------------------------------- table
def _rows(name, result, ood_sets):
    failed = result.error is not None
    rows = []
    for ood_set in ood_sets:
        metrics = result.metrics.get(ood_set, {})
        rows.append(
            {
                "detector": name,
                "ood_set": ood_set,
                **{m: float(metrics.get(m, np.nan)) for m in METRICS},
                "fit_seconds": float(result.fit_seconds),
                "score_seconds": float(result.score_seconds.get(ood_set, np.nan)),
                "error": result.error,
            }
        )
    complete = not failed and len(result.score_seconds) == len(ood_sets) + 1
    rows.append(
        {
            "detector": name,
            "ood_set": "mean",
            **{
                m: float(np.mean([r[m] for r in rows])) if not failed else np.nan
                for m in METRICS
            },
            "fit_seconds": float(result.fit_seconds),
            "score_seconds": (
                float(sum(result.score_seconds.values())) if complete else np.nan
            ),
            "error": result.error,
        }
    )
    return rows


def _table(rows, bank):
    try:
        import pandas as pd
    except ImportError:
        return rows
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    # object dtype keeps None for "no error" (pandas 3 would infer its string
    # dtype, which turns None into NaN).
    table["error"] = pd.Series([row["error"] for row in rows], dtype=object)
    table.attrs["extraction_seconds"] = dict(bank.seconds)
    table.attrs["fit_extraction_seconds"] = bank.fit_seconds
    return table


def _print_progress(name, i, n, result, mean_row):
    prefix = f"[evaluate] {i}/{n} {name}:"
    if result.error is not None:
        message = f"{prefix} failed: {result.error}"
    else:
        message = (
            f"{prefix} fit {result.fit_seconds:.2f} s, score "
            f"{mean_row['score_seconds']:.2f} s, mean AUROC {mean_row['auroc']:.4f}, "
            f"mean FPR95 {mean_row['fpr95']:.4f}"
        )
    print(message, file=sys.stderr, flush=True)
