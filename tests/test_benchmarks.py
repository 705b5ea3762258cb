"""Smoke test: the benchmark scripts run (their numbers are read by people)."""

import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"


def test_bench_detectors_quick_smoke():
    pytest.importorskip("pytorch_ood")
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_detectors.py"),
            "--quick",
            "--cases",
            "a",
            "--only",
            "Energy,Mahalanobis",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Energy" in result.stdout and "Mahalanobis" in result.stdout


def test_bench_training_quick_smoke():
    pytest.importorskip("skorch")
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_training.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for text in ("UM+Energy", "UMAP", "MSP score", "ratio ours / bare"):
        assert text in result.stdout


def test_bench_evaluation_quick_smoke():
    pytest.importorskip("torch")
    pytest.importorskip("pandas")
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_evaluation.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("n detectors"))
    rows = [line.split() for line in lines[header + 2 : header + 4]]
    # One model pass per input set with evaluate, one per detector without
    # (plus fit's few probe images).
    passes = [(int(r[0]), round(float(r[1])), round(float(r[2]))) for r in rows]
    assert passes == [(1, 1, 1), (3, 1, 3)]
    assert all(float(row[-1]) == 0 for row in rows)  # the same AUROCs
