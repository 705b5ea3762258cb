"""One-pass ``evaluate`` against one pipeline per detector: the extraction cost.

``N`` detectors are run, on the same model, data and process, two ways:

* **evaluate**: :func:`sklearn_ood.evaluation.evaluate` with one
  :class:`~sklearn_ood.torch.TorchFeatureTransformer`: the union of the
  layers the detectors need comes out of one forward pass per batch, so
  each input set (fit set and every test set) goes through the model once;
* **pipelines**: for each detector its own
  ``Pipeline([("feat", TorchFeatureTransformer(model, layer=its layer)),
  ("ood", detector)])``, fitted on the fit set and scoring every test set,
  with :func:`~sklearn_ood.metrics.ood_report` on each OOD set (the same
  work as ``evaluate`` does besides the extraction): ``N`` passes.

The detectors, in order (the first ``N`` are used): Energy (logits),
Mahalanobis (penultimate), MaxSoftmax (logits), KNN (k = 10, penultimate),
ViM (penultimate, the model's head), MultiMahalanobis (block2 + block3 +
penultimate), MaxLogit (logits), RMD (penultimate).

Model and data: an untrained ``FashionCNN`` (10 classes, width 16; built
without weights: the timings do not depend on them) on generated 28 x 28
images in [0, 1] (uniform noise smoothed by a 3 x 3 box filter): a fit set
with random labels, an ID test set and two OOD sets. CPU, ``--threads``
threads (default 2), batch size 128.

Columns: ``model passes`` = images that went through the model's forward
divided by the images in the sets (fit + test), counted by a forward
pre-hook (``fit``'s probe batches are the fraction above a whole number);
``evaluate s`` and ``pipelines s``: wall-clock time of each way, best of
``--repeats`` runs, the two ways alternating which goes first; ``ratio`` =
pipelines / evaluate; ``max |dAUROC|``: the largest AUROC difference
between the two ways over detectors and OOD sets (0: same scores).

    python benchmarks/bench_evaluation.py --threads 1   # ~2 min
    python benchmarks/bench_evaluation.py               # 2 threads
    python benchmarks/bench_evaluation.py --quick       # smoke run, seconds

On cores that other processes also use, prefer ``--threads 1``: two torch
threads then wait on each other and a pass can be several times slower, and
erratic (see benchmarks/README.md).
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import _bench_env  # noqa: E402

# Thread counts must be in the environment before NumPy / torch load.
_bench_env.configure(sys.argv)

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _bench_utils import fmt_table  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from sklearn_ood.detectors import (  # noqa: E402
    KNN,
    RMD,
    Energy,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    MultiMahalanobis,
    ViM,
)
from sklearn_ood.evaluation import evaluate  # noqa: E402
from sklearn_ood.metrics import ood_report  # noqa: E402
from sklearn_ood.torch import FashionCNN, TorchFeatureTransformer  # noqa: E402

BATCH_SIZE = 128
MULTI_LAYERS = ["block2", "block3", "penultimate"]
# (n fit, n per test set, detector counts)
SIZES = {"full": (4000, 1500, (1, 2, 4, 8)), "quick": (200, 100, (1, 3))}


def make_detectors(model):
    """``name -> (detector, layer)``, in the order the first N are taken."""
    return {
        "Energy": (Energy(), "logits"),
        "Mahalanobis": (Mahalanobis(reg_covar=1e-6), "penultimate"),
        "MaxSoftmax": (MaxSoftmax(), "logits"),
        "KNN": (KNN(n_neighbors=10), "penultimate"),
        "ViM": (ViM(head=model.fc), "penultimate"),
        "MultiMahalanobis": (MultiMahalanobis(reg_covar=1e-6), MULTI_LAYERS),
        "MaxLogit": (MaxLogit(), "logits"),
        "RMD": (RMD(reg_covar=1e-6), "penultimate"),
    }


def make_data(n_fit, n_test, seed=0):
    """Smoothed noise images: a fit set with labels, ID and two OOD sets."""
    rng = np.random.default_rng(seed)

    def images(n, low=0.0, high=1.0):
        x = rng.uniform(low, high, size=(n, 1, 30, 30))
        # 3 x 3 box filter: smooth, image-like inputs for the convolutions.
        x = sum(x[:, :, i : i + 28, j : j + 28] for i in range(3) for j in range(3))
        return (x / 9).astype(np.float32)

    X_fit = images(n_fit)
    y_fit = rng.integers(0, 10, size=n_fit)
    test_sets = {
        "id": images(n_test),
        "bright": images(n_test, 0.3, 1.0),
        "dark": images(n_test, 0.0, 0.7),
    }
    return X_fit, y_fit, test_sets


class ImageCounter:
    """Counts the images that reach the model's forward (a pre-hook)."""

    def __init__(self, model):
        self.images = 0
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.images += len(args[0])

    def remove(self):
        self._handle.remove()


def run_evaluate(model, detectors, X_fit, y_fit, test_sets):
    transformer = TorchFeatureTransformer(model, batch_size=BATCH_SIZE, device="cpu")
    table = evaluate(detectors, X_fit, y_fit, test_sets, transformer)
    if table["error"].notna().any():
        raise RuntimeError(table["error"].dropna().tolist())
    rows = table[table.ood_set != "mean"]
    return dict(zip(zip(rows.detector, rows.ood_set), rows.auroc))


def run_pipelines(model, detectors, X_fit, y_fit, test_sets, widths):
    aurocs = {}
    for name, (detector, layer) in detectors.items():
        detector = clone(detector)
        if name == "MultiMahalanobis":
            detector.set_params(groups=widths)
        feat = TorchFeatureTransformer(
            model, layer=layer, batch_size=BATCH_SIZE, device="cpu"
        )
        pipe = Pipeline([("feat", feat), ("ood", detector)]).fit(X_fit, y_fit)
        id_scores = pipe.score_samples(test_sets["id"])
        for set_name, X in test_sets.items():
            if set_name == "id":
                continue
            scores = pipe.score_samples(X)
            y = np.r_[np.zeros(len(id_scores)), -np.ones(len(scores))]
            report = ood_report(y, np.r_[id_scores, scores])
            aurocs[name, set_name] = report["auroc"]
    return aurocs


def timed(fn, counter, n_images):
    counter.images = 0
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, counter.images / n_images, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=None, help="runs per way")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_fit, n_test, counts = SIZES["quick" if args.quick else "full"]
    repeats = args.repeats or (1 if args.quick else 3)

    torch.manual_seed(0)
    model = FashionCNN(n_classes=10, width=16).eval()
    X_fit, y_fit, test_sets = make_data(n_fit, n_test)
    n_images = n_fit + sum(len(X) for X in test_sets.values())
    all_detectors = make_detectors(model)
    widths = list(
        TorchFeatureTransformer(model, layer=MULTI_LAYERS, device="cpu")
        .fit(X_fit[:2])
        .feature_blocks_.values()
    )
    # Warm-up (oneDNN kernels, allocator), untimed.
    small = {name: X[:BATCH_SIZE] for name, X in test_sets.items()}
    run_evaluate(model, all_detectors, X_fit[:300], y_fit[:300], small)

    print(
        f"bench_evaluation{' (quick)' if args.quick else ''}: torch "
        f"{torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} thread(s); FashionCNN(width=16) on 28x28, "
        f"fit {n_fit} + test 3 x {n_test} images, batch {BATCH_SIZE}, best of "
        f"{repeats} run(s) per way",
        flush=True,
    )
    counter = ImageCounter(model)
    rows = []
    for n in counts:
        detectors = dict(list(all_detectors.items())[:n])
        ways = {
            "evaluate": lambda d=detectors: run_evaluate(
                model, d, X_fit, y_fit, test_sets
            ),
            "pipelines": lambda d=detectors: run_pipelines(
                model, d, X_fit, y_fit, test_sets, widths
            ),
        }
        seconds = {way: [] for way in ways}
        passes, aurocs = {}, {}
        for i in range(repeats):
            order = list(ways) if i % 2 == 0 else list(ways)[::-1]
            for way in order:
                s, p, aurocs[way] = timed(ways[way], counter, n_images)
                seconds[way].append(s)
                passes[way] = p
        best = {way: min(s) for way, s in seconds.items()}
        diff = max(
            abs(aurocs["evaluate"][key] - aurocs["pipelines"][key])
            for key in aurocs["pipelines"]
        )
        rows.append(
            (
                n,
                f"{passes['evaluate']:.2f}",
                f"{passes['pipelines']:.2f}",
                f"{best['evaluate']:.2f}",
                f"{best['pipelines']:.2f}",
                f"{best['pipelines'] / best['evaluate']:.2f}",
                f"{diff:.1g}",
            )
        )
        print(f"  done: {n} detector(s)", file=sys.stderr, flush=True)
    counter.remove()
    header = (
        "n detectors",
        "model passes (evaluate)",
        "model passes (pipelines)",
        "evaluate s",
        "pipelines s",
        "ratio",
        "max |dAUROC|",
    )
    print()
    print(fmt_table(header, rows))
    print(
        "\ndetectors, in order: "
        + ", ".join(
            f"{name} ({layer if isinstance(layer, str) else '+'.join(layer)})"
            for name, (_, layer) in all_detectors.items()
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
