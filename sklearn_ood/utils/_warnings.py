"""Warnings that point at the user's line, wherever the package warns from."""

import os
import sys
import warnings

import sklearn

import sklearn_ood

# Frames inside these packages are skipped when looking for the caller.
_INTERNAL = tuple(
    os.path.dirname(package.__file__) + os.sep for package in (sklearn_ood, sklearn)
)


def warn(message, category=UserWarning):
    """``warnings.warn`` with the ``stacklevel`` of the first frame outside
    sklearn-ood and scikit-learn, i.e. the user's call (``fit``, a
    ``Pipeline``, ``GridSearchCV``), however deep the package's own calls go.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
