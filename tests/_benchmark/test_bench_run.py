"""Mean and spread over seeds, and the ranking of the benchmark table."""

import math

import numpy as np
import pytest

from sklearn_ood._benchmark._run import METRICS, aggregate, rank


def _row(detector, ood_set, auroc, seed, error=None):
    values = {m: auroc for m in METRICS}
    return {
        "detector": detector,
        "ood_set": ood_set,
        "family": "logits",
        **values,
        "fit_seconds": 1.0 + seed,
        "score_seconds": 2.0,
        "error": error,
        "seed": seed,
    }


def test_one_seed_keeps_the_values_without_std():
    rows = aggregate([[_row("A", "noise", 0.8, 0), _row("A", "mean", 0.8, 0)]])
    assert [(r["detector"], r["ood_set"]) for r in rows] == [
        ("A", "noise"),
        ("A", "mean"),
    ]
    assert rows[0]["auroc"] == 0.8
    assert not any(key.endswith("_std") for key in rows[0])


def test_several_seeds_mean_and_sample_std():
    runs = [[_row("A", "noise", v, s)] for s, v in enumerate([0.7, 0.8, 0.9])]
    (row,) = aggregate(runs)
    assert row["auroc"] == pytest.approx(0.8)
    assert row["auroc_std"] == pytest.approx(np.std([0.7, 0.8, 0.9], ddof=1))
    assert row["fit_seconds"] == pytest.approx(2.0)  # mean of 1, 2, 3
    assert row["error"] is None


def test_a_failed_seed_gives_nan_and_its_error():
    runs = [
        [_row("A", "noise", 0.7, 0)],
        [_row("A", "noise", math.nan, 1, error="ValueError: boom")],
    ]
    (row,) = aggregate(runs)
    assert math.isnan(row["auroc"]) and math.isnan(row["auroc_std"])
    assert row["error"] == "seed 1: ValueError: boom"


def test_rank_best_mean_auroc_first_failures_last():
    rows = [
        _row("Low", "noise", 0.6, 0),
        _row("Low", "mean", 0.6, 0),
        _row("Failed", "noise", math.nan, 0, "E: x"),
        _row("Failed", "mean", math.nan, 0, "E: x"),
        _row("High", "noise", 0.9, 0),
        _row("High", "mean", 0.9, 0),
    ]
    ranked = rank(rows)
    assert [(r["detector"], r["ood_set"]) for r in ranked] == [
        ("High", "noise"),
        ("High", "mean"),
        ("Low", "noise"),
        ("Low", "mean"),
        ("Failed", "noise"),
        ("Failed", "mean"),
    ]
