"""scikit-learn's own estimator checks over every registered detector."""

import pytest
from _helpers import TORCH_DETECTOR_KWARGS, RandomLinearHead
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ood import all_detectors
from sklearn_ood._registry import FAMILIES

# Constructor arguments for detectors that cannot be built with defaults alone.
# The checks fit on data of 1 to 10 columns, so heads are built for the width.
_HEAD = {"head": RandomLinearHead(n_classes=3)}
DETECTOR_KWARGS = {
    # n_revised_classes must not exceed the 2-5 logit columns used.
    "OpenMax": {"n_revised_classes": 1},
    # Some checks fit on 10 rows; the leave-one-out threshold needs
    # n_neighbors + 1 <= n.
    "KNN": {"n_neighbors": 5},
    "NNGuide": {**_HEAD, "n_neighbors": 5},
    # Model-based detectors of sklearn_ood.torch get a tiny tabular network
    # that accepts any width (only where torch is installed).
    **TORCH_DETECTOR_KWARGS,
    **{
        name: _HEAD
        for name in (
            "ViM",
            "Residual",
            "SHE",
            "fDBD",
            "NCI",
            "ASH",
            "DICE",
            "ReAct",
            "SCALE",
        )
    },
    # On the checks' 2-column blobs, the default 60th percentile of each
    # feature zeroes both features of about 36 % of the rows, which then tie
    # at one score: the 5 % quantile falls in the tie and predict rejects none.
    "VRA": {**_HEAD, "lower_percentile": 10},
    "LTS": _HEAD,
    "PNML": _HEAD,
    "MCM": _HEAD,
}

# Every expected failure of scikit-learn's checks, with its reason, in one place:
# {detector name: {check name: reason}}.
_LABEL_IS_LOGIT_COLUMN = (
    "in logit space a label is the index of its logit column; the check fits "
    "labels {0, 1, 2} (or {1, 2}) on 2 columns, which is refused with a clear "
    "ValueError"
)
_LABEL_CHECKS = {
    name: _LABEL_IS_LOGIT_COLUMN
    for name in (
        "check_estimators_overwrite_params",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_classifier_data_not_an_array",
    )
}
_NEEDS_Y = (
    "TemperatureScaling fits T by the NLL of the labels; the outlier checks "
    "call fit(X) without y although the estimator tags require y"
)
_TOO_FEW_CORRECT = (
    "OpenMax fits a Weibull tail per class from its correctly classified rows "
    "and needs at least 3 of them; the check's random labels disagree with "
    "the argmax of its random logits, so a class has fewer and fit raises"
)
_NO_CORRECT_ROWS = (
    "SHE stores the mean feature of each class's correctly classified fit rows; "
    "the check's labels are unrelated to the random head, so no row is "
    "classified as its label and fit raises a clear ValueError"
)
_LEAVE_ONE_OUT = (
    "offset_ comes from leave-one-out scores of the fit rows (docs/conventions.md: a "
    "detector that memorises its fit data scores each fit point without "
    "itself), but predict(X_fit) scores them with themselves in the bank, so "
    "fewer than contamination * n fit rows are rejected"
)
_RMD_NEEDS_Y = (
    "RMD requires y (with a single class the relative distance is identically "
    "0); the outlier checks call fit(X) without y although the tags require it"
)
_INTEGER_X = (
    "steps along the gradient of the model with respect to its inputs, which "
    "needs floating-point X; integer X is refused with a ValueError saying to "
    "convert and scale it as at training time, never cast silently"
)
EXPECTED_FAILED_CHECKS = {
    **{
        name: {
            "check_estimators_dtypes": _INTEGER_X,
            "check_classifier_data_not_an_array": _INTEGER_X,
        }
        for name in ("ODIN", "MahalanobisPreprocessed")
    },
    "RMD": {
        "check_outliers_fit_predict": _RMD_NEEDS_Y,
        "check_outliers_train": _RMD_NEEDS_Y,
    },
    **{
        name: {
            "check_outliers_train": _LEAVE_ONE_OUT,
            "check_outliers_fit_predict": _LEAVE_ONE_OUT,
        }
        # Gram's bounds and normalisation are leave-one-out over the fit rows,
        # and so are NAC's histogram counts.
        for name in ("KNN", "Gram", "NAC")
    },
    "SHE": {
        name: _NO_CORRECT_ROWS
        for name in (
            "check_positive_only_tag_during_fit",
            "check_dtype_object",
            "check_pipeline_consistency",
            "check_estimators_pickle",
        )
    },
    "TemperatureScaling": {
        **_LABEL_CHECKS,
        "check_outliers_fit_predict": _NEEDS_Y,
        "check_outliers_train": _NEEDS_Y,
    },
    "KLMatching": _LABEL_CHECKS,
    "OpenMax": {
        **_LABEL_CHECKS,
        **{
            name: _TOO_FEW_CORRECT
            for name in (
                "check_dont_overwrite_parameters",
                "check_n_features_in_after_fitting",
                "check_positive_only_tag_during_fit",
                "check_estimators_dtypes",
                "check_dtype_object",
                "check_estimators_nan_inf",
                "check_f_contiguous_array_estimator",
                "check_methods_sample_order_invariance",
                "check_methods_subset_invariance",
                "check_dict_unchanged",
                "check_fit2d_predict1d",
            )
        },
    },
}


def _instances():
    for name, cls in all_detectors():
        yield cls(**DETECTOR_KWARGS.get(name, {}))


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


def test_registry_is_not_empty():
    names = [name for name, _ in all_detectors()]
    assert {"MaxSoftmax", "Energy", "MaxLogit", "Entropy", "GEN"} <= set(names)


def test_expected_failures_name_registered_detectors():
    names = {name for name, _ in all_detectors()}
    # Registered only where torch is installed.
    torch_names = {"Gram", "ODIN", "MahalanobisPreprocessed", "NAC"}
    assert set(EXPECTED_FAILED_CHECKS) - torch_names <= names
    assert set(DETECTOR_KWARGS) <= names


@parametrize_with_checks(
    list(_instances()), expected_failed_checks=_expected_failed_checks
)
def test_sklearn_compatible_detector(estimator, check):
    check(estimator)


@pytest.mark.parametrize("name, cls", all_detectors())
def test_detector_is_exported(name, cls):
    import sklearn_ood.detectors as detectors

    if cls.__module__.startswith("sklearn_ood.detectors"):
        assert getattr(detectors, name) is cls


@pytest.mark.parametrize("name, cls", all_detectors())
def test_detector_declares_family_and_input(name, cls):
    # evaluate() and the benchmark command feed detectors through these.
    assert cls._family in FAMILIES, f"{name}: _family={cls._family!r}"
    assert cls._input_kind in {"logits", "features", "layers", "inputs"}
    assert (cls._input_kind == "inputs") == (cls._family == "model")


@pytest.mark.parametrize("name, cls", all_detectors())
def test_docstring_has_formula_example_and_reference_difference(name, cls):
    doc = cls.__doc__ or ""
    assert ".. math::" in doc, f"{name}: no formula"
    assert "Examples\n    --------" in doc, f"{name}: no example"
    assert "pytorch-ood" in doc, f"{name}: no comparison with pytorch-ood"
