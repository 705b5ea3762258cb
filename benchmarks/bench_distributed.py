"""Fit on a Dask cluster a set larger than one worker's memory limit.

Mahalanobis, ViM and KNN are fitted on a generated ``dask.array`` (the
blocks are made on the workers, never all in one process) on a
``distributed.LocalCluster`` whose workers each have ``--memory-limit``
bytes, then on the same rows in memory in this process. Printed: the time of
each fit, the peak memory of each worker during the Dask fit (each detector
starts on fresh worker processes), and the largest difference between the
two fits' scores (``offset_`` included). ``--scheduler ADDRESS`` runs the same
code on a real cluster (``Client("tcp://scheduler:8786")``), where
``--no-baseline`` skips the in-memory fit.

    python benchmarks/bench_distributed.py --quick   # seconds
    python benchmarks/bench_distributed.py           # 1,700,000 x 128 float32
"""

import argparse
import os
import pathlib
import resource
import sys
import time
import warnings

import numpy as np

try:
    import sklearn_ood  # noqa: F401
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

MIB = 2**20


def _labels(block_id, rows, n_classes, seed):
    rng = np.random.default_rng([seed, block_id[0]])
    return rng.integers(0, n_classes, len(rows))


def _rows(block_id, labels, means, seed):
    rng = np.random.default_rng([seed, block_id[0], 1])
    noise = rng.standard_normal((len(labels), means.shape[1]), dtype=np.float32)
    return np.maximum(means[labels] + noise, 0)  # ReLU features, float32


def make_data(n_rows, n_features, n_classes, chunk_rows, seed):
    """Labels and ReLU features of class means, made block by block."""
    import dask.array as da

    means = np.random.default_rng(seed).normal(size=(n_classes, n_features))
    means = means.astype(np.float32)
    chunks = tuple(
        min(chunk_rows, n_rows - start) for start in range(0, n_rows, chunk_rows)
    )
    index = da.arange(n_rows, chunks=(chunks,))
    y = index.map_blocks(
        lambda rows, block_id: _labels(block_id, rows, n_classes, seed),
        dtype=np.int64,
    )
    X = y.map_blocks(
        lambda labels, block_id: _rows(block_id, labels, means, seed),
        new_axis=1,
        chunks=(chunks, (n_features,)),
        dtype=np.float32,
    )
    return X, y


def _peak_rss():
    """Peak resident memory of this process, in bytes.

    Linux's ``VmHWM`` starts anew with the worker's program; ``ru_maxrss``
    (the fallback elsewhere) would count the memory of the process that
    forked it.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def detectors(n_features, n_classes, seed):
    from sklearn_ood.detectors import KNN, Mahalanobis, ViM

    rng = np.random.default_rng(seed + 1)
    head = (rng.normal(size=(n_classes, n_features)), rng.normal(size=n_classes))
    return {
        "Mahalanobis": lambda: Mahalanobis(),
        "ViM": lambda: ViM(head, n_components=n_features // 2),
        "KNN": lambda: KNN(n_neighbors=10),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--rows", type=int, default=1_700_000)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--memory-limit", default="768MiB", help="per worker")
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--only", default="Mahalanobis,ViM,KNN")
    parser.add_argument("--scheduler", help="address of a running scheduler")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.features, args.chunk_rows = 20_000, 16, 4_000
        args.classes, args.queries, args.memory_limit = 10, 500, "1GiB"

    import dask
    from distributed import Client, LocalCluster

    # The workers hold a KNN bank, which they must neither spill to disk nor
    # pause on; scikit-learn's working_memory (read by the spawned workers
    # from the environment) keeps each search's temporaries small.
    dask.config.set({"distributed.worker.memory.target": False,
                     "distributed.worker.memory.spill": False,
                     "distributed.worker.memory.pause": False})  # fmt: skip
    os.environ.setdefault("SKLEARN_WORKING_MEMORY", "64")

    def connect():
        """A client of the scheduler, or of a new local cluster (fresh worker
        processes, so that their peak memory is that of one fit)."""
        if args.scheduler:
            return Client(args.scheduler), None
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=args.memory_limit,
            dashboard_address=None,
        )
        return Client(cluster), cluster

    X, y = make_data(args.rows, args.features, args.classes, args.chunk_rows, args.seed)
    size = X.nbytes / MIB
    limit = dask.utils.parse_bytes(args.memory_limit) / MIB
    where = (
        f"scheduler {args.scheduler}"
        if args.scheduler
        else f"{args.workers} local workers of {limit:.0f} MiB each"
    )
    print(
        f"fit set: {args.rows:,} x {args.features} float32 = {size:.0f} MiB in "
        f"{X.numblocks[0]} blocks; {where}"
    )
    queries = make_data(args.queries, args.features, args.classes, 10**9, args.seed + 7)
    queries = queries[0].compute(scheduler="sync")
    X_mem = y_mem = None
    if not args.no_baseline:
        X_mem, y_mem = dask.compute(X, y, scheduler="sync")
    factories = detectors(args.features, args.classes, args.seed)
    header = (
        f"{'detector':<12} {'dask fit s':>10} {'memory fit s':>12} "
        f"{'max worker peak MiB':>19} {'worker limit MiB':>16} {'max |diff|':>10}"
    )
    print(header)
    print("-" * len(header), flush=True)
    for name in args.only.split(","):
        client, cluster = connect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            det = factories[name]().fit(X, y)
            dask_time = time.perf_counter() - start
            peaks = client.run(_peak_rss)
            mem_time = diff = float("nan")
            if X_mem is not None:
                start = time.perf_counter()
                ref = factories[name]().fit(X_mem, y_mem)
                mem_time = time.perf_counter() - start
                diff = max(
                    float(np.max(np.abs(det.score_samples(queries)
                                        - ref.score_samples(queries)))),
                    abs(det.offset_ - ref.offset_),
                )  # fmt: skip
                del ref
        peak = max(peaks.values()) / MIB
        print(
            f"{name:<12} {dask_time:>10.2f} {mem_time:>12.2f} {peak:>19.0f} "
            f"{limit:>16.0f} {diff:>10.2g}",
            flush=True,
        )
        del det
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
