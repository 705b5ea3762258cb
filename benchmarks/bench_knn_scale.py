"""KNN on a bank of a million rows: exact search against faiss IVF and HNSW.

One bank of clustered float32 features (``--n-bank`` x ``--n-features``,
default 1,000,000 x 256), searched by ``KNN(n_neighbors=k)`` (normalised
rows, ``--k`` default 50) three ways: exact (``algorithm="auto"``: faiss's
brute force when faiss is installed, else NumPy), ``"faiss-ivf"`` and
``"faiss-hnsw"`` with their default ``algorithm_params`` (or those given by
``--ivf`` / ``--hnsw``). For each, the table gives:

* build: ``fit`` with ``contamination=None`` (the bank, and the index of the
  approximate ones; no leave-one-out threshold pass);
* query: the search ``score_samples`` runs for the queries (normalisation,
  candidates, exact float64 distances of the candidates), timed on the
  private ``kneighbors`` call so that its neighbour lists serve for recall;
  the scores are its distances to the k-th neighbour, as ``score_samples``;
* recall@k: the fraction of the exact k nearest rows found, over the
  queries;
* max |score diff|: against the exact scores;
* AUROC and its change against exact search, ID = held-out rows of the
  bank's clusters, OOD = rows of another set of clusters (half the
  queries each).

Data (deterministic for a ``--seed``): 100 ID clusters, each a centre
~ N(0, I) plus a random 8-dimensional subspace (scale 1/2 per direction)
plus isotropic noise (0.05 per entry), so that neighbours lie along a
low-dimensional structure as penultimate features do; OOD rows come from 20
ID clusters (centre and subspace) moved by 0.5 * N(0, I) (near OOD: the
exact AUROC is about 0.9, not 1).

    python benchmarks/bench_knn_scale.py             # 1M x 256, 10k queries (minutes)
    python benchmarks/bench_knn_scale.py --quick     # 20k x 64, 1k queries (seconds)
    python benchmarks/bench_knn_scale.py --ivf default --ivf nprobe=16
    python benchmarks/bench_knn_scale.py --n-bank 200000 --ivf none \
        --hnsw default --hnsw efConstruction=40,efSearch=128
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import _bench_env  # noqa: E402

# Thread counts must be in the environment before NumPy / faiss load.
_bench_env.configure(sys.argv)

import argparse  # noqa: E402
import time  # noqa: E402

import _bench_utils as bu  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from sklearn_ood.detectors import KNN  # noqa: E402
from sklearn_ood.detectors._knn_search import (  # noqa: E402
    _EXTRA_CANDIDATES,
    kneighbors,
    normalize_rows,
)

N_CLUSTERS, N_OOD_CLUSTERS, SUBSPACE, SPREAD, NOISE = 100, 20, 8, 0.5, 0.05
# OOD clusters: ID clusters moved by OOD_SHIFT * N(0, I).
OOD_SHIFT = 0.5


def _clusters(rng, n_clusters, n_features):
    centres = rng.normal(size=(n_clusters, n_features)).astype(np.float32)
    bases = rng.normal(size=(n_clusters, n_features, SUBSPACE)).astype(np.float32)
    return centres, bases * np.float32(SPREAD)


def _draw(rng, clusters, n_rows, block=50_000):
    """``n_rows`` float32 rows of random clusters, a block at a time."""
    centres, bases = clusters
    out = np.empty((n_rows, centres.shape[1]), dtype=np.float32)
    for start in range(0, n_rows, block):
        m = min(block, n_rows - start)
        lab = rng.integers(0, len(centres), m)
        z = rng.normal(size=(m, SUBSPACE)).astype(np.float32)
        rows = centres[lab] + np.einsum("ndk,nk->nd", bases[lab], z)
        rows += np.float32(NOISE) * rng.standard_normal(rows.shape, np.float32)
        out[start : start + m] = rows
    return out


def make_data(n_bank, n_features, n_queries, seed):
    rng = np.random.default_rng(seed)
    id_clusters = _clusters(rng, N_CLUSTERS, n_features)
    # Near OOD: ID clusters (centre and subspace) moved off their place.
    near = rng.integers(0, N_CLUSTERS, N_OOD_CLUSTERS)
    shift = rng.normal(size=(N_OOD_CLUSTERS, n_features)).astype(np.float32)
    ood_clusters = (
        id_clusters[0][near] + np.float32(OOD_SHIFT) * shift,
        id_clusters[1][near],
    )
    bank = _draw(rng, id_clusters, n_bank)
    n_id = n_queries // 2
    queries = np.vstack(
        [_draw(rng, id_clusters, n_id), _draw(rng, ood_clusters, n_queries - n_id)]
    )
    is_id = np.r_[np.ones(n_id), np.zeros(n_queries - n_id)]
    return bank, queries, is_id


def _params(text):
    """``"a=1,b=2"`` -> ``{"a": 1, "b": 2}``."""
    if not text or text == "default":
        return None
    return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}


def run_one(name, algorithm, params, bank, queries, k, seed):
    det = KNN(
        n_neighbors=k,
        algorithm=algorithm,
        algorithm_params=params,
        random_state=seed,
        contamination=None,
    )
    t0 = time.perf_counter()
    det.fit(bank)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    distances, indices = kneighbors(
        det.bank_,
        normalize_rows(queries, dtype=det.bank_.dtype),
        k,
        algorithm=det.algorithm_ if det.index_ is None else "numpy",
        index=det.index_,
    )
    query = time.perf_counter() - t0
    index = det.index_
    setting = "exact" if index is None else ""
    if index is not None and algorithm == "faiss-ivf":
        setting = f"nlist={index.nlist_} nprobe={index.nprobe_}"
    elif index is not None:
        # The beam searched for the k + 8 candidates that scoring asks for.
        setting = (
            f"M={index.M_} efC={index.ef_construction_} "
            f"efSearch={index.ef_search(k + _EXTRA_CANDIDATES)}"
        )
    return dict(
        name=name,
        algorithm=det.algorithm_,
        setting=setting,
        build=build,
        query=query,
        scores=-distances[:, -1],
        indices=indices,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k x 64, 1k queries")
    parser.add_argument("--n-bank", type=int, default=None)
    parser.add_argument("--n-features", type=int, default=None)
    parser.add_argument("--n-queries", type=int, default=None)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", default="2")
    parser.add_argument(
        "--ivf",
        action="append",
        help="IVF setting, e.g. nlist=1000,nprobe=64 (repeat for more rows; "
        "'default' for the defaults, which run when none is given; 'none' "
        "for no IVF row)",
    )
    parser.add_argument(
        "--hnsw",
        action="append",
        help="HNSW setting, e.g. M=16,efConstruction=80,efSearch=64 (as --ivf)",
    )
    args = parser.parse_args(argv)
    bu.limit_threads(int(args.threads))
    n_bank = args.n_bank or (20_000 if args.quick else 1_000_000)
    n_features = args.n_features or (64 if args.quick else 256)
    n_queries = args.n_queries or (1_000 if args.quick else 10_000)

    print(f"# {bu.thread_report()}", file=sys.stderr)
    t0 = time.perf_counter()
    bank, queries, is_id = make_data(n_bank, n_features, n_queries, args.seed)
    print(
        f"# data: bank {n_bank:,} x {n_features} float32 "
        f"({bank.nbytes / 2**20:,.0f} MiB), {n_queries:,} queries "
        f"(half ID, half OOD), k={args.k}; made in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    runs = [("exact", "auto", None)]
    runs += [
        ("IVF", "faiss-ivf", _params(p)) for p in args.ivf or ["default"] if p != "none"
    ]
    runs += [
        ("HNSW", "faiss-hnsw", _params(p))
        for p in args.hnsw or ["default"]
        if p != "none"
    ]
    results = []
    for name, algorithm, params in runs:
        print(f"# {name} ...", file=sys.stderr, flush=True)
        result = run_one(name, algorithm, params, bank, queries, args.k, args.seed)
        results.append(result)
    exact = results[0]
    auroc_exact = roc_auc_score(is_id, exact["scores"])
    rows = []
    for r in results:
        recall = (
            np.mean(
                [len(set(a) & set(b)) for a, b in zip(r["indices"], exact["indices"])]
            )
            / args.k
        )
        auroc = roc_auc_score(is_id, r["scores"])
        rows.append(
            [
                r["name"],
                r["setting"] if r["name"] != "exact" else f"exact ({r['algorithm']})",
                f"{r['build']:.1f}",
                f"{r['query']:.1f}",
                f"{exact['query'] / r['query']:.1f}x",
                f"{recall:.4f}",
                f"{np.abs(r['scores'] - exact['scores']).max():.2e}",
                f"{auroc:.5f}",
                f"{auroc - auroc_exact:+.5f}",
            ]
        )
    header = [
        "search",
        "setting",
        "build s",
        "query s",
        "speed-up",
        f"recall@{args.k}",
        "max|score diff|",
        "AUROC",
        "dAUROC",
    ]
    print(
        f"KNN(n_neighbors={args.k}) on {n_bank:,} x {n_features} float32, "
        f"{n_queries:,} queries, {args.threads} threads"
    )
    print(bu.fmt_table(header, rows))


if __name__ == "__main__":
    main()
