"""One benchmark run: per seed data, model, detectors and ``evaluate``.

:func:`run_benchmark` takes the parsed arguments of ``sklearn-ood
benchmark`` and returns everything the report needs. Arguments are checked
first (paths, classes, detector names), so a mistake costs no training.
"""

import os
import platform
import time
import warnings

import numpy as np

from sklearn_ood._benchmark import _catalogue, _data, _training
from sklearn_ood._benchmark._common import BenchmarkError, UsageError, one_line

# The fashion-mnist preset's default subsample: training stays a few minutes
# on 2 CPU cores (the full set is 30,000 ID training images).
FASHION_N_TRAIN = 6000
FASHION_N_TEST = 2000
METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error")


class Plan:
    """The checked settings of a run (from the command line)."""

    def __init__(self, args):
        self.args = args
        self.seeds = list(dict.fromkeys(args.seeds))  # distinct, in order
        bad = [seed for seed in self.seeds if not 0 <= seed < 2**32]
        if bad:
            raise UsageError(f"--seeds must be in 0..2**32 - 1; got {bad}.")
        if os.path.exists(args.output) and not os.path.isdir(args.output):
            raise UsageError(f"--output: {args.output} is a file, not a folder.")
        self.user_data = args.id_data is not None
        if self.user_data and args.id_classes is not None:
            raise UsageError(
                "--id-classes selects the classes of a preset; with --id-data "
                "every class of the data is ID."
            )
        if self.user_data and not args.ood_data:
            raise UsageError("--id-data needs at least one --ood-data NAME=PATH.")
        if args.model is None and args.arch is not None and not self.user_data:
            # --arch trains another network on a preset: only the presets' own.
            raise UsageError(
                "--arch names the architecture of a --model state dict (or of "
                "the network trained on --id-data)."
            )
        if args.n_classes is not None and args.model is None:
            raise UsageError("--n-classes applies to a --model state dict only.")
        if args.epochs is not None and args.epochs < 1:
            raise UsageError(f"--epochs must be at least 1; got {args.epochs}.")
        if args.image_size < 4:
            raise UsageError(f"--image-size must be at least 4; got {args.image_size}.")
        if args.fashion_path is not None:
            _data.check_path(args.fashion_path, "--fashion-path")
        fashion = not self.user_data and args.preset == "fashion-mnist"
        for option in ("n_train", "n_test"):
            if getattr(args, option) is not None and not fashion:
                raise UsageError(
                    f"--{option.replace('_', '-')} subsamples the fashion-mnist "
                    "preset only."
                )
            if getattr(args, option) is not None and getattr(args, option) < 10:
                raise UsageError(f"--{option.replace('_', '-')} must be at least 10.")
        self.n_train = (args.n_train or FASHION_N_TRAIN) if fashion else None
        self.n_test = (args.n_test or FASHION_N_TEST) if fashion else None
        self.id_classes = None
        if not self.user_data:
            default = (0, 1, 2, 3, 4)
            self.id_classes = _data.check_id_classes(args.id_classes or default)
        if args.id_data is not None:
            _data.check_path(args.id_data, "--id-data")
        if args.model is not None and not os.path.isfile(args.model):
            raise UsageError(f"--model: no such file: {args.model}")
        self.ood_paths = _data.parse_ood_specs(args.ood_data)
        self.selected = _catalogue.select(args.detectors)
        if not self.selected:
            raise UsageError("--detectors selects no detector.")
        self.device = _training.resolve_device(args.device)
        # None: chosen from the images of --id-data (see train_arch).
        self.arch = args.arch or _training.PRESET_ARCH.get(args.preset)
        if self.user_data:
            self.arch = args.arch

    def train_arch(self, task):
        """The network to train: --arch, the preset's, or by image size.

        For --id-data without --arch: DigitsCNN (one pooling step) below
        16 x 16 pixels, FashionCNN (two) from there.
        """
        if self.arch is not None:
            return self.arch
        small = len(task.sample_shape) == 3 and min(task.sample_shape[1:]) < 16
        return "digits-cnn" if small else "fashion-cnn"

    def task(self, seed):
        args = self.args
        if self.user_data:
            return _data.load_user_task(
                args.id_data, self.ood_paths, seed, image_size=args.image_size
            )
        task = _data.load_preset(
            args.preset,
            seed,
            id_classes=self.id_classes,
            fashion_path=args.fashion_path,
            n_train=self.n_train,
            n_test=self.n_test,
        )
        task.ood.update(
            _data.read_user_ood(self.ood_paths, task.sample_shape, args.image_size)
        )
        task.ood_kind.update({name: "user" for name in self.ood_paths})
        return task

    def model(self, task, seed, log):
        args = self.args
        if args.model is not None:
            return _training.load_user_model(
                args.model, arch=args.arch, n_classes=args.n_classes, task=task
            )
        arch = self.train_arch(task)
        return _training.trained_model(
            task,
            arch,
            seed,
            epochs=args.epochs or _training.TRAINING[arch]["epochs"],
            cache_dir=args.cache_dir,
            device=self.device,
            log=log,
        )

    def config(self):
        """The settings, for ``results.json``."""
        args = self.args
        return {
            "preset": None if self.user_data else args.preset,
            "seeds": self.seeds,
            "detectors": [name for name, _ in self.selected],
            "id_classes": None if self.id_classes is None else list(self.id_classes),
            "epochs": args.epochs,
            "arch": self.arch,
            "device": self.device,
            "threads": args.threads,
            "model": args.model,
            "id_data": args.id_data,
            "ood_data": dict(self.ood_paths),
            "image_size": args.image_size,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "layers": args.layers,
            "cache_dir": args.cache_dir,
            "output": args.output,
            "speed_settings": _catalogue.SPEED_SETTINGS,
        }


def run_benchmark(args, log):
    """Run every seed; return the per-seed results and their aggregate."""
    plan = Plan(args)
    runs, models, skipped, first = [], [], [], None
    start = time.perf_counter()
    for seed in plan.seeds:
        seed_run = _run_seed(plan, seed, log)
        runs.append(
            {"seed": seed, "rows": seed_run["rows"], "warnings": seed_run["warnings"]}
        )
        models.append({"seed": seed, **seed_run["model"]})
        skipped = seed_run["skipped"]
        if first is None:
            first = seed_run
    ranking = rank(aggregate([run["rows"] for run in runs]))
    return {
        "config": plan.config(),
        "versions": versions(),
        "data": first["task"].summary(),
        "models": models,
        "runs": runs,
        "aggregate": ranking,
        "skipped": skipped,
        "first": first,
        "seconds": time.perf_counter() - start,
    }


def _run_seed(plan, seed, log):
    from sklearn_ood.evaluation import evaluate
    from sklearn_ood.torch import TorchFeatureTransformer

    task = plan.task(seed)
    model, info = plan.model(task, seed, log)
    _training.check_model_fits(model, task, plan.device)
    info["id_test_accuracy"] = _training.accuracy(model, task, plan.device)
    log(f"seed {seed}: ID test accuracy {info['id_test_accuracy']:.3f}")

    blocks = _training.conv_blocks(model, plan.args.layers)
    head = None
    if not _training.is_scripted(model):
        try:
            # A few samples: the layers resolve (or fail) before the long part.
            probe = TorchFeatureTransformer(
                model, layer=[*blocks, "penultimate"], device=plan.device
            ).fit(task.X_train[:8])
        except ValueError as exc:
            if plan.args.layers:
                raise UsageError(f"--layers: {one_line(exc)}") from exc
            log(f"no layer features ({one_line(exc)}); logits and inputs only")
        else:
            head = model.get_submodule(probe.layers_["penultimate"][0])
    # Without the head there are no penultimate features (TorchScript, or no
    # nn.Linear): the logit and model detectors still run.
    layers = [*blocks, "penultimate"] if head is not None else "logits"
    blocks = blocks if head is not None else []
    transformer = TorchFeatureTransformer(
        model, layer=layers, device=plan.device, verbose=log.verbose
    )
    detectors, skipped = _catalogue.build(
        plan.selected,
        model=model,
        head=head,
        blocks=blocks,
        seed=seed,
        device=plan.device,
        n_classes=task.n_classes,
    )
    if not detectors:
        raise UsageError(
            "no selected detector applies to this model: "
            + "; ".join(f"{s['detector']} {s['reason']}" for s in skipped)
        )
    with warnings.catch_warnings(record=True) as caught:
        # Recorded, not printed: detectors warn in the middle of the progress
        # lines, and their warnings belong with the results (results.json).
        warnings.simplefilter("always")
        table, details = evaluate(
            detectors,
            task.X_train,
            task.y_train,
            {"id": task.X_test, **task.ood},
            transformer=transformer,
            return_details=True,
            verbose=log.verbose,
        )
    messages = list(
        dict.fromkeys(f"{w.category.__name__}: {one_line(w.message)}" for w in caught)
    )
    for message in messages:
        log(f"warning: {message}")
    families = {name: cls._family for name, cls in plan.selected}
    rows = [
        {**row, "family": families[row["detector"]], "seed": seed}
        for row in _records(table)
    ]
    if not any(np.isfinite(row["auroc"]) for row in rows):
        log("every detector failed; see the errors under the table")
    return {
        "task": task,
        "model": {**info, "extraction_seconds": _extraction_seconds(details)},
        "warnings": messages,
        "model_object": model,
        "transformer": transformer,
        "details": details,
        "rows": rows,
        "skipped": skipped,
    }


def _extraction_seconds(details):
    return {
        "fit": float(details.fit_extraction_seconds),
        **{k: float(v) for k, v in details.extraction_seconds.items()},
    }


def _records(table):
    """``evaluate``'s table as a list of dicts (DataFrame or list)."""
    if hasattr(table, "to_dict"):
        records = table.to_dict("records")
    else:
        records = [dict(row) for row in table]
    for row in records:
        # pandas stores a missing error as None or NaN depending on the column.
        if not isinstance(row.get("error"), str):
            row["error"] = None
    return records


# ----------------------------------------------------------- over the seeds
def aggregate(runs):
    """Mean and sample standard deviation (ddof=1) per detector and set.

    ``runs`` is one list of rows per seed. With one seed the rows come back
    with the metrics as they are and no ``_std`` keys. A detector that
    failed in any seed has NaN means (its metrics are not comparable).
    """
    n_seeds = len(runs)
    keys, groups = [], {}
    for rows in runs:
        for row in rows:
            key = (row["detector"], row["ood_set"])
            if key not in groups:
                keys.append(key)
                groups[key] = []
            groups[key].append(row)
    out = []
    for key in keys:
        rows = groups[key]
        agg = {"detector": key[0], "ood_set": key[1], "family": rows[0]["family"]}
        for metric in METRICS:
            values = np.array([row[metric] for row in rows], dtype=float)
            agg[metric] = float(np.mean(values)) if len(values) == n_seeds else np.nan
            if n_seeds > 1:
                agg[metric + "_std"] = (
                    float(np.std(values, ddof=1)) if len(values) == n_seeds else np.nan
                )
        for timing in ("fit_seconds", "score_seconds"):
            agg[timing] = float(np.mean([row[timing] for row in rows]))
        errors = [
            (row["seed"], row["error"]) for row in rows if row["error"] is not None
        ]
        if not errors:
            agg["error"] = None
        elif n_seeds == 1:
            agg["error"] = errors[0][1]
        else:
            agg["error"] = "; ".join(f"seed {s}: {e}" for s, e in errors)
        out.append(agg)
    return out


def rank(rows):
    """Rows grouped by detector, best mean AUROC first (failed ones last)."""
    mean_auroc = {
        row["detector"]: row["auroc"] for row in rows if row["ood_set"] == "mean"
    }

    def key(detector):
        value = mean_auroc.get(detector, np.nan)
        return (np.isnan(value), -value if not np.isnan(value) else 0.0)

    order = sorted(dict.fromkeys(row["detector"] for row in rows), key=key)
    position = {name: i for i, name in enumerate(order)}
    # Stable: within a detector the sets keep evaluate's order, "mean" last.
    return sorted(rows, key=lambda row: position[row["detector"]])


def versions():
    import sklearn

    from sklearn_ood import __version__

    out = {
        "sklearn_ood": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "platform": platform.platform(),
    }
    for module in ("torch", "skorch", "matplotlib", "pandas"):
        try:
            out[module] = __import__(module).__version__
        except ImportError:
            out[module] = None
    return out


def check_torch():
    """One clear error when the torch extra is missing."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise BenchmarkError(
            "the benchmark needs PyTorch: install the torch extra, pip install "
            '"sklearn-ood[torch]"'
        ) from exc
