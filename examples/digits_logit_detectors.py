"""
==================================================================
Compare the logit-space detectors on scikit-learn's bundled digits
==================================================================

A classifier is trained on the digits 0-4 (in-distribution). At test time it
sees held-out 0-4 digits (ID), the digits 5-9 it never saw (near OOD) and
uniform noise images (far OOD). Every logit detector scores the classifier's
logits; the table reports the mean and spread of AUROC and FPR@95TPR over
several seeds, because OOD results on small data move with the split.

Runs offline in a few seconds: ``python examples/digits_logit_detectors.py``.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ood.detectors import (
    GEN,
    Energy,
    Entropy,
    KLMatching,
    MaxLogit,
    MaxSoftmax,
    OpenMax,
    TemperatureScaling,
)
from sklearn_ood.metrics import auroc, fpr_at_tpr

DETECTORS = {
    "MaxSoftmax": MaxSoftmax(),
    "MaxSoftmax(T=10)": MaxSoftmax(temperature=10.0),
    "MaxLogit": MaxLogit(),
    "Energy": Energy(),
    "Entropy": Entropy(),
    "GEN": GEN(),
    "TemperatureScaling": TemperatureScaling(),
    "KLMatching": KLMatching(),
    "OpenMax": OpenMax(tailsize=20, n_revised_classes=3),
}
SEEDS = range(5)


def one_seed(seed, X, y):
    """Train on ID digits, return {(detector, OOD set): (auroc, fpr95)}."""
    rng = np.random.default_rng(seed)
    is_id = y < 5
    X_id_train, X_id_test, y_id_train, _ = train_test_split(
        X[is_id], y[is_id], test_size=0.3, random_state=seed, stratify=y[is_id]
    )
    # Fit data for the detectors is the training data, as in the papers.
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    clf.fit(X_id_train, y_id_train)
    logits = clf.decision_function  # (n, 5) class scores = logits

    ood_sets = {
        "digits 5-9": X[~is_id],
        "noise": rng.uniform(0, 16, size=(500, X.shape[1])),
    }
    results = {}
    for name, detector in DETECTORS.items():
        detector.fit(logits(X_id_train), y_id_train)
        id_scores = detector.score_samples(logits(X_id_test))
        for ood_name, X_ood in ood_sets.items():
            scores = np.concatenate([id_scores, detector.score_samples(logits(X_ood))])
            y_true = np.r_[np.zeros(len(id_scores), int), -np.ones(len(X_ood), int)]
            results[name, ood_name] = (
                auroc(y_true, scores),
                fpr_at_tpr(y_true, scores),
            )
    return results


def main():
    X, y = load_digits(return_X_y=True)
    runs = [one_seed(seed, X, y) for seed in SEEDS]
    print(f"ID: digits 0-4, logistic regression; mean +- std over {len(SEEDS)} seeds")
    print(f"{'detector':<20} {'OOD set':<11} {'AUROC':>15} {'FPR@95TPR':>15}")
    for key in runs[0]:
        values = np.array([run[key] for run in runs])
        mean, std = values.mean(axis=0), values.std(axis=0)
        print(
            f"{key[0]:<20} {key[1]:<11} {mean[0]:>8.3f} +- {std[0]:.3f}"
            f" {mean[1]:>8.3f} +- {std[1]:.3f}"
        )


if __name__ == "__main__":
    main()
