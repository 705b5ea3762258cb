"""The detector catalogue of the benchmark: selection and construction."""

import pytest

pytest.importorskip("torch")

from sklearn_ood import all_detectors  # noqa: E402
from sklearn_ood._benchmark._catalogue import (  # noqa: E402
    FAMILIES,
    SPEED_SETTINGS,
    build,
    select,
)
from sklearn_ood._benchmark._common import UsageError  # noqa: E402
from sklearn_ood.base import BaseDetector  # noqa: E402
from sklearn_ood.torch import DigitsCNN  # noqa: E402

CATALOGUE = dict(all_detectors())


def _names(selected):
    return [name for name, _ in selected]


def test_select_everything_by_default():
    assert _names(select(None)) == _names(all_detectors())
    assert _names(select(["ALL"])) == _names(all_detectors())


def test_select_names_and_families_case_insensitive():
    chosen = _names(select(["LOGITS,knn", "vim"]))
    logits = [n for n, c in all_detectors() if c._family == "logits"]
    assert set(chosen) == {*logits, "KNN", "ViM"}
    # The catalogue's order, not the command line's.
    assert chosen == [n for n in _names(all_detectors()) if n in chosen]


def test_every_family_is_known():
    assert {cls._family for cls in CATALOGUE.values()} <= set(FAMILIES)


def test_unknown_name_lists_names_and_families():
    with pytest.raises(UsageError, match="unknown detector or family 'nope'") as info:
        select(["Energy", "nope"])
    message = str(info.value)
    assert "Mahalanobis" in message and "activation-shaping" in message


def _build(names, **kwargs):
    model = DigitsCNN(n_classes=5, width=4)
    params = {
        "model": model,
        "head": model.fc,
        "blocks": ["block1", "block2"],
        "seed": 3,
        "device": "cpu",
        "n_classes": 5,
    }
    params.update(kwargs)
    return model, build([(n, CATALOGUE[n]) for n in names], **params)


def test_build_fills_required_parameters():
    names = ["Energy", "ViM", "Gram", "OpenMax", "MCDropout", "MultiMahalanobis"]
    model, (detectors, skipped) = _build(names)
    assert skipped == []
    assert list(detectors) == names
    for det in detectors.values():
        assert det.get_params()["contamination"] is None
    assert detectors["ViM"].head is model.fc
    assert detectors["Gram"].layers == ["block1", "block2"]
    assert detectors["Gram"].model is model
    assert detectors["Gram"].device == "cpu"
    # The default (10) is more than the 5 ID classes.
    assert detectors["OpenMax"].n_revised_classes == 5
    assert detectors["MCDropout"].n_samples == SPEED_SETTINGS["MCDropout"]["n_samples"]
    assert detectors["MCDropout"].random_state == 3


def test_build_skips_what_the_model_cannot_give():
    names = ["Energy", "ViM", "Gram", "MultiMahalanobis", "Mahalanobis"]
    _, (detectors, skipped) = _build(names, head=None, blocks=[])
    assert list(detectors) == ["Energy"]
    reasons = {s["detector"]: s["reason"] for s in skipped}
    assert "TorchScript" in reasons["ViM"] and "TorchScript" in reasons["Mahalanobis"]
    assert "--layers" in reasons["Gram"]
    assert "TorchScript" in reasons["MultiMahalanobis"]
    # With the head but no blocks, only the multi-layer detectors drop out.
    _, (detectors, skipped) = _build(names, blocks=[])
    assert list(detectors) == ["Energy", "ViM", "Mahalanobis"]
    assert {s["detector"] for s in skipped} == {"Gram", "MultiMahalanobis"}
    assert all("--layers" in s["reason"] for s in skipped)
    assert {s["family"] for s in skipped} <= set(FAMILIES)


def test_build_skips_unknown_required_parameters():
    class NeedsBudget(BaseDetector):
        _family = "logits"
        _input_kind = "logits"

        def __init__(self, budget, *, contamination=0.05):
            super().__init__(contamination=contamination)
            self.budget = budget

    detectors, skipped = build(
        [("NeedsBudget", NeedsBudget)],
        model=None,
        head=None,
        blocks=[],
        seed=0,
        device="cpu",
        n_classes=3,
    )
    assert detectors == {}
    assert skipped == [
        {
            "detector": "NeedsBudget",
            "family": "logits",
            "reason": "needs budget=..., which the benchmark cannot choose",
        }
    ]


def test_build_skips_detectors_that_need_a_special_model():
    # A background logit, or held-out calibration data: not a plain classifier
    # fitted on its training rows, so listed with the detector's own reason.
    names = ["Energy", "BackgroundClass", "TemperatureScaling"]
    _, (detectors, skipped) = _build(names)
    assert list(detectors) == ["Energy"]
    reasons = {s["detector"]: s["reason"] for s in skipped}
    assert reasons == {
        name: CATALOGUE[name]._needs_special_model
        for name in ("BackgroundClass", "TemperatureScaling")
    }
    assert "background" in reasons["BackgroundClass"]
