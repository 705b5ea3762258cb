"""Throughput of TorchFeatureTransformer against a bare inference loop.

For each case the same model runs over the same batches of random inputs,
in the same process, twice:

* **bare**: ``with torch.inference_mode(): model(x)`` over the batches (each
  moved from a NumPy array to the device), nothing kept;
* **ours**: ``TorchFeatureTransformer(model, layer=...).transform(X)``, which
  also pools the hooked layers and returns float32 NumPy features.

Runs alternate (bare first, then ours first, ...), ``--repeats`` times
each. The img/s columns show the best run of each path; ``ratio`` is the
median over adjacent (bare, ours) pairs of bare time / ours time, i.e. ours
relative throughput (1.0 = no overhead), which load from other processes
on a shared machine disturbs less than a ratio of two best runs;
``ms/batch extra`` is the median extra wall-clock time per batch (negative
values are noise). The first case, a tiny MLP with almost no compute,
measures that fixed cost per batch. ``forwards/batches`` counts the model's
forward calls in one ``transform`` (a pre-hook on the model): it equals the
number of batches however many layers are hooked. Models are built without
weights (nothing downloads).

    python benchmarks/bench_extraction.py                  # CPU, 2 threads
    python benchmarks/bench_extraction.py --device cuda     # also --amp bf16
    python benchmarks/bench_extraction.py --quick          # smoke run
"""

import argparse
import contextlib
import platform
import time

import numpy as np
import torch
import torchvision

from sklearn_ood.torch import DigitsCNN, TorchFeatureTransformer

# name, model, image shape, layer(s), batch size, images (cpu, cuda)
CASES = [
    # Almost no compute: shows the fixed cost per batch of the transformer.
    ("tiny-mlp 8 features", "mlp", (8,), "logits", 256, (102_400, 1_024_000)),
    ("digits-cnn 8x8", "digits", (1, 8, 8), "logits", 256, (10_240, 200_000)),
    ("resnet18 32x32", "resnet18", (3, 32, 32), "logits", 128, (384, 20_000)),
    ("resnet18 32x32", "resnet18", (3, 32, 32), "penultimate", 128, (384, 20_000)),
    (
        "resnet18 32x32",
        "resnet18",
        (3, 32, 32),
        ["layer3", "layer4", "penultimate"],
        128,
        (384, 20_000),
    ),
    ("resnet18 224x224", "resnet18", (3, 224, 224), "logits", 32, (64, 2_048)),
    (
        "resnet18 224x224",
        "resnet18",
        (3, 224, 224),
        ["layer3", "layer4", "penultimate"],
        32,
        (64, 2_048),
    ),
]
AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def build(name):
    torch.manual_seed(0)
    if name == "mlp":
        return torch.nn.Sequential(
            torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)
        ).eval()
    if name == "digits":
        return DigitsCNN(n_classes=10).eval()
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def bare_loop(model, X, batch_size, device, amp_dtype):
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            xb = torch.from_numpy(X[start : start + batch_size])
            with autocast(device, amp_dtype):
                model(xb.to(device, non_blocking=True))
    synchronize(device)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_case(case, device, amp_dtype, quick, repeats):
    label, model_name, shape, layer, batch_size, sizes = case
    n = sizes[device.type == "cuda"] // (8 if quick else 1)
    n = max(n, 2 * batch_size)
    model = build(model_name).to(device)
    X = np.random.default_rng(0).normal(size=(n, *shape)).astype(np.float32)
    ours = TorchFeatureTransformer(
        model,
        layer=layer,
        batch_size=batch_size,
        device=device,
        amp_dtype=amp_dtype,
    ).fit(X[:batch_size])

    # Warm up both paths (allocator, oneDNN / cuDNN kernels) on one batch.
    bare_loop(model, X[:batch_size], batch_size, device, amp_dtype)
    ours.transform(X[:batch_size])

    forwards = {"n": 0}

    def count(module, args):
        forwards["n"] += 1

    def run_bare():
        bare_times.append(
            timed(lambda: bare_loop(model, X, batch_size, device, amp_dtype))
        )

    def run_ours():
        handle = model.register_forward_pre_hook(count)
        ours_times.append(timed(lambda: (ours.transform(X), synchronize(device))))
        handle.remove()

    bare_times, ours_times = [], []
    for i in range(repeats):  # alternate which path goes first
        for run in (run_bare, run_ours) if i % 2 == 0 else (run_ours, run_bare):
            run()
    bare_times, ours_times = np.array(bare_times), np.array(ours_times)
    n_batches = -(-n // batch_size)
    layers = layer if isinstance(layer, str) else "+".join(layer)
    return {
        "case": f"{label} {layers}",
        "device": str(device),
        "batch": batch_size,
        "n": n,
        "bare": n / bare_times.min(),
        "ours": n / ours_times.min(),
        # Each bare run is paired with the adjacent ours run: other load on a
        # shared machine hits both alike, so the median pair is robust.
        "ratio": float(np.median(bare_times / ours_times)),
        "overhead": float(np.median(ours_times - bare_times)) / n_batches * 1e3,
        "forwards": f"{forwards['n'] // repeats}/{n_batches}",
    }


def print_table(rows):
    header = ("case", "device", "batch", "n images", "bare img/s", "ours img/s")
    header += ("ratio", "ms/batch extra", "forwards/batches")
    widths = [max(len(r["case"]) for r in rows), 7, 5, 8, 10, 10, 5, 14, 16]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        cells = (
            f"{r['case']:<{widths[0]}}",
            f"{r['device']:<7}",
            f"{r['batch']:>5}",
            f"{r['n']:>8}",
            f"{r['bare']:>10.1f}",
            f"{r['ours']:>10.1f}",
            f"{r['ratio']:>5.3f}",
            f"{r['overhead']:>14.3f}",
            f"{r['forwards']:>16}",
        )
        print("  ".join(cells))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument("--quick", action="store_true", help="8x fewer images")
    parser.add_argument("--repeats", type=int, default=7, help="timings per path")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (0: torch default)"
    )
    parser.add_argument("--amp", choices=sorted(AMP), default="none")
    parser.add_argument(
        "--cases", default=None, help="comma-separated case indices (default: all)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{hardware}, {torch.get_num_threads()} CPU threads, amp={args.amp}, "
        f"{args.repeats} runs per path"
    )
    cases = CASES
    if args.cases:
        cases = [CASES[int(i)] for i in args.cases.split(",")]
    rows = []
    for case in cases:
        rows.append(run_case(case, device, AMP[args.amp], args.quick, args.repeats))
        print(f"  done: {rows[-1]['case']}", flush=True)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
