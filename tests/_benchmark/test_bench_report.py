"""The printed table and the files of the benchmark (from a made-up result)."""

import csv
import json
import math

from sklearn_ood._benchmark._report import (
    csv_columns,
    format_table,
    write_csv,
    write_json,
)


def _result(n_seeds=1):
    def row(detector, ood_set, auroc, error=None):
        out = {
            "detector": detector,
            "ood_set": ood_set,
            "family": "gaussian",
            "auroc": auroc,
            "aupr_in": auroc,
            "aupr_out": auroc,
            "fpr95": 1 - auroc if not math.isnan(auroc) else auroc,
            "detection_error": 0.1,
            "fit_seconds": 0.5,
            "score_seconds": 0.25,
            "error": error,
        }
        if n_seeds > 1:
            out.update({f"{m}_std": 0.01 for m in ("auroc", "aupr_in", "aupr_out")})
            out.update({"fpr95_std": 0.02, "detection_error_std": 0.0})
        return out

    aggregate = [
        row("Good", "near", 0.9),
        row("Good", "mean", 0.9),
        row("Broken", "near", math.nan, "ValueError: no\nway"),
        row("Broken", "mean", math.nan, "ValueError: no\nway"),
    ]
    return {
        "config": {
            "preset": "digits",
            "seeds": list(range(n_seeds)),
            "id_classes": [0, 1],
        },
        "versions": {},
        "data": {"ood": {"near": {"kind": "near", "n_samples": 3}}},
        "models": [{"id_test_accuracy": 0.95 + 0.01 * s} for s in range(n_seeds)],
        "runs": [{"seed": s, "rows": []} for s in range(n_seeds)],
        "aggregate": aggregate,
        "skipped": [{"detector": "Gram", "family": "model", "reason": "needs x"}],
        "seconds": 1.0,
    }


def test_table_lists_metrics_errors_and_skipped():
    text = format_table(_result())
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("detector"))
    assert header.split() == [
        "detector", "near", "mean", "AUROC", "mean", "FPR95", "fit", "s", "score", "s",
    ]  # fmt: skip
    good = next(line for line in lines if line.startswith("Good"))
    assert good.split() == ["Good", "0.900", "0.900", "0.100", "0.50", "0.25"]
    broken = next(line for line in lines if line.startswith("Broken"))
    assert broken.split()[1:4] == ["-", "-", "-"]
    assert "  Broken: ValueError: no way" in lines  # one line per error
    assert "  Gram: needs x" in lines
    assert "ID test accuracy 0.950" in text


def test_table_with_seeds_shows_the_spread():
    text = format_table(_result(n_seeds=2))
    good = next(line for line in text.splitlines() if line.startswith("Good"))
    assert "0.900 +- 0.010" in good
    assert "mean +- std over seeds 0 1" in text


def test_csv_and_json_write_nan_as_missing(tmp_path):
    result = _result(n_seeds=2)
    write_csv(tmp_path / "r.csv", result)
    with open(tmp_path / "r.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == csv_columns(2)
    assert rows[2]["auroc"] == "" and rows[2]["error"] == "ValueError: no\nway"
    assert float(rows[0]["auroc_std"]) == 0.01
    write_json(tmp_path / "r.json", result, {"roc.png": None})
    # Strict JSON (no NaN token): the standard parser in strict mode reads it.
    payload = json.loads(
        (tmp_path / "r.json").read_text(), parse_constant=lambda c: 1 / 0
    )
    assert payload["aggregate"][2]["auroc"] is None
    assert payload["figures"] == {"roc.png": None}
