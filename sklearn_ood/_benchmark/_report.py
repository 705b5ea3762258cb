"""What a run hands back: the printed table, the files and the figures.

Into ``--output``: ``results.csv`` (written with the ``csv`` module, so
pandas is not needed), ``results.json``, ``roc.png`` and ``scores.png``.
Figures are drawn on ``matplotlib.figure.Figure`` objects, never through
pyplot, so a call from a notebook does not change its backend; without
matplotlib they are skipped with a note.
"""

import csv
import json
import math
import os
import warnings

import numpy as np

from sklearn_ood._benchmark._common import BenchmarkError, one_line
from sklearn_ood._benchmark._run import METRICS

# How many of the best detectors the ROC figure shows (more is unreadable).
N_ROC_CURVES = 5
# The histogram's threshold: the detectors' default contamination, i.e. the
# TPR-95 operating point of the OOD literature.
THRESHOLD_CONTAMINATION = 0.05


# -------------------------------------------------------------------- table
def _cell(row, metric, n_seeds):
    value = row.get(metric, np.nan)
    if value is None or not np.isfinite(value):
        return "-"
    if n_seeds > 1:
        return f"{value:.3f} +- {row.get(metric + '_std', np.nan):.3f}"
    return f"{value:.3f}"


def format_table(result):
    """The results table as text: one line per detector, best first."""
    rows = result["aggregate"]
    n_seeds = len(result["runs"])
    ood_sets = list(result["data"]["ood"])
    by_detector = {}
    for row in rows:
        by_detector.setdefault(row["detector"], {})[row["ood_set"]] = row
    header = ["detector", *ood_sets, "mean AUROC", "mean FPR95", "fit s", "score s"]
    lines = []
    for name, sets in by_detector.items():
        mean = sets["mean"]
        lines.append(
            [
                name,
                *[_cell(sets[s], "auroc", n_seeds) for s in ood_sets],
                _cell(mean, "auroc", n_seeds),
                _cell(mean, "fpr95", n_seeds),
                _seconds(mean["fit_seconds"]),
                _seconds(mean["score_seconds"]),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def fmt(cells):
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [_title(result), "", fmt(header), fmt(["-" * w for w in widths])]
    out.extend(fmt(line) for line in lines)
    errors = [
        (row["detector"], row["error"])
        for row in rows
        if row["ood_set"] == "mean" and row["error"]
    ]
    if errors:
        out += ["", "failed:"]
        out += [f"  {name}: {' '.join(error.split())}" for name, error in errors]
    if result["skipped"]:
        out += ["", "not applicable:"]
        out += [f"  {s['detector']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(out)


def _seconds(value):
    return "-" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _title(result):
    config = result["config"]
    seeds = config["seeds"]
    data = config["preset"] or "your data"
    if config["id_classes"] is not None:
        data += f", ID classes {' '.join(map(str, config['id_classes']))}"
    accuracies = [m["id_test_accuracy"] for m in result["models"]]
    accuracy = f"{np.mean(accuracies):.3f}"
    if len(seeds) > 1:
        accuracy += f" +- {np.std(accuracies, ddof=1):.3f}"
        spread = f"mean +- std over seeds {' '.join(map(str, seeds))}"
    else:
        spread = f"seed {seeds[0]}"
    model = config.get("model") or result["models"][0].get("arch")
    return (
        f"{data}; model {model}, ID test accuracy {accuracy}; {spread}.\n"
        "AUROC per OOD set (ID is the positive class) and its mean over the sets; "
        "FPR95: share of OOD accepted when 95 % of ID is kept."
    )


# -------------------------------------------------------------------- files
def csv_columns(n_seeds):
    metrics = [
        column
        for metric in METRICS
        for column in ((metric, metric + "_std") if n_seeds > 1 else (metric,))
    ]
    return [
        "detector",
        "ood_set",
        "family",
        *metrics,
        "fit_seconds",
        "score_seconds",
        "error",
    ]


def write_csv(path, result):
    columns = csv_columns(len(result["runs"]))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in result["aggregate"]:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})


def _csv_value(value):
    # NaN and None become empty cells, which pandas and spreadsheets read as
    # missing values.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def write_json(path, result, figures):
    payload = {
        "config": result["config"],
        "versions": result["versions"],
        "data": result["data"],
        "models": result["models"],
        "runs": result["runs"],
        "aggregate": result["aggregate"],
        "skipped": result["skipped"],
        "figures": figures,
        "seconds": result["seconds"],
    }
    with open(path, "w", encoding="utf-8") as f:
        # Strict JSON: NaN becomes null.
        json.dump(_jsonable(payload), f, indent=2, allow_nan=False)
        f.write("\n")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value


def write_outputs(result, output, log):
    """Write every file into ``output``; return their paths."""
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as exc:
        message = f"cannot create --output {output}: {one_line(exc)}"
        raise BenchmarkError(message) from exc
    paths = {"csv": os.path.join(output, "results.csv")}
    write_csv(paths["csv"], result)
    figures = write_figures(result, output, log)
    paths["json"] = os.path.join(output, "results.json")
    write_json(paths["json"], result, figures)
    paths.update({name: path for name, path in figures.items() if path})
    return paths


# ------------------------------------------------------------------ figures
def write_figures(result, output, log):
    """``roc.png`` and ``scores.png`` of the first seed; ``{name: path|None}``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        log('matplotlib is not installed: no figures (pip install "sklearn-ood[plot]")')
        return {"roc.png": None, "scores.png": None}
    first = result["first"]
    scores = first["details"].scores
    best = [
        row["detector"]
        for row in result["aggregate"]
        if row["ood_set"] == "mean" and row["detector"] in scores
    ]
    out = {}
    for name, draw in (("roc.png", _draw_roc), ("scores.png", _draw_scores)):
        path = os.path.join(output, name)
        if not best:
            out[name] = None
            continue
        fig = None
        try:
            fig = draw(Figure, result, best, log)
            fig.savefig(path, dpi=110)
        except Exception as exc:  # noqa: BLE001 - the results are already saved
            log(f"could not draw {name}: {one_line(exc)}")
            out[name] = None
        else:
            out[name] = path
    return out


def _panels(Figure, n, title):
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.6 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes[:n]


def _set_names(result):
    return [(name, info["kind"]) for name, info in result["data"]["ood"].items()]


def _draw_roc(Figure, result, best, log):
    from sklearn_ood.plotting import OODRocCurveDisplay

    first = result["first"]
    scores = first["details"].scores
    chosen = best[:N_ROC_CURVES]
    sets = _set_names(result)
    fig, axes = _panels(
        Figure,
        len(sets),
        f"ROC curves of the {len(chosen)} best detectors by mean AUROC "
        f"(seed {result['runs'][0]['seed']})",
    )
    for ax, (ood_set, kind) in zip(axes, sets):
        y, by_name = _labelled(scores, chosen, ood_set)
        OODRocCurveDisplay.from_predictions(y, by_name, ax=ax)
        ax.set_title(f"{ood_set} ({kind})")
        ax.legend(loc="lower right", fontsize="x-small")
    return fig


def _draw_scores(Figure, result, best, log):
    from sklearn_ood.plotting import OODScoreDisplay

    first = result["first"]
    name = best[0]
    scores = first["details"].scores[name]
    threshold = _threshold(first, name, log)
    sets = _set_names(result)
    note = (
        f"threshold: {THRESHOLD_CONTAMINATION:.0%} of the ID training rows rejected"
        if threshold is not None
        else "no threshold"
    )
    fig, axes = _panels(
        Figure,
        len(sets),
        f"{name} scores, ID test vs each OOD set ({note}; seed "
        f"{result['runs'][0]['seed']})",
    )
    for ax, (ood_set, kind) in zip(axes, sets):
        OODScoreDisplay(
            scores["id"], scores[ood_set], threshold=threshold, name=name
        ).plot(ax=ax)
        ax.set_title(f"{ood_set} ({kind})")
        ax.legend(fontsize="small")
    return fig


def _labelled(scores, names, ood_set):
    n_id, n_ood = len(scores[names[0]]["id"]), len(scores[names[0]][ood_set])
    y = np.r_[np.zeros(n_id, int), -np.ones(n_ood, int)]
    return y, {name: np.r_[scores[name]["id"], scores[name][ood_set]] for name in names}


def _threshold(first, name, log):
    """The detector's ``offset_`` at the default contamination.

    The benchmark fits with ``contamination=None`` (scores only); the figure
    refits a clone of the best detector on the same inputs with the default
    contamination, which sets ``offset_`` from honest training scores.
    """
    from sklearn.base import clone

    from sklearn_ood.torch import TorchFeatureTransformer

    details, task = first["details"], first["task"]
    fed = details.layers[name]
    try:
        if fed == "inputs":
            X = task.X_train
        else:
            transformer = first["transformer"]
            X = TorchFeatureTransformer(
                first["model_object"], layer=fed, device=transformer.device
            ).fit_transform(task.X_train)
        detector = clone(details.detectors[name])
        detector.set_params(contamination=THRESHOLD_CONTAMINATION)
        with warnings.catch_warnings():
            # The same fit warned during evaluate; it is in results.json.
            warnings.simplefilter("ignore")
            detector.fit(X, task.y_train)
        return float(detector.offset_)
    except Exception as exc:  # noqa: BLE001 - the histogram is drawn without it
        log(f"scores.png: no threshold for {name} ({one_line(exc)})")
        return None
