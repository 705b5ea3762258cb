"""Smoke test: the benchmark scripts run (their numbers are read by people)."""

import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"


def _run(script, *args, timeout=300):
    """stdout of ``python benchmarks/<script> <args>``, which must succeed."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_bench_detectors_quick_smoke():
    pytest.importorskip("pytorch_ood")
    stdout = _run(
        "bench_detectors.py",
        *("--quick", "--cases", "a", "--only", "Energy,Mahalanobis", "--repeats", "1"),
    )
    assert "Energy" in stdout and "Mahalanobis" in stdout


def test_bench_training_quick_smoke():
    pytest.importorskip("skorch")
    stdout = _run("bench_training.py", "--quick", timeout=120)
    for text in ("UM+Energy", "UMAP", "MSP score", "ratio ours / bare"):
        assert text in stdout


def test_bench_evaluation_quick_smoke():
    pytest.importorskip("torch")
    pytest.importorskip("pandas")
    stdout = _run("bench_evaluation.py", "--quick")
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("n detectors"))
    rows = [line.split() for line in lines[header + 2 : header + 4]]
    # One model pass per input set with evaluate, one per detector without
    # (plus fit's few probe images).
    passes = [(int(r[0]), round(float(r[1])), round(float(r[2]))) for r in rows]
    assert passes == [(1, 1, 1), (3, 1, 3)]
    assert all(float(row[-1]) == 0 for row in rows)  # the same AUROCs


def test_bench_knn_scale_quick_smoke():
    pytest.importorskip("faiss")
    stdout = _run("bench_knn_scale.py", "--quick")
    lines = stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[3:6]}
    assert set(rows) == {"exact", "IVF", "HNSW"}
    # Columns from the end: recall@k, max |score diff|, AUROC, dAUROC.
    assert rows["exact"][-4] == "1.0000" and rows["exact"][-1] == "+0.00000"
    for name in ("IVF", "HNSW"):
        assert 0.5 <= float(rows[name][-4]) <= 1.0


def test_bench_distributed_quick_smoke():
    pytest.importorskip("dask")
    pytest.importorskip("distributed")
    stdout = _run("bench_distributed.py", "--quick", "--only", "Mahalanobis,KNN")
    for text in ("Mahalanobis", "KNN", "max worker peak MiB"):
        assert text in stdout


def test_bench_gram_quick_smoke():
    pytest.importorskip("pytorch_ood")
    stdout = _run(
        "bench_gram.py",
        *("--quick", "--repeats", "1", "--n-fit", "300", "--n-score", "200"),
        *("--powers", "3"),
    )
    for text in ("ours", "theirs", "fit ratio", "rho"):
        assert text in stdout
