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
