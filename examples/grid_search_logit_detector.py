"""
======================================================================
Tune a detector's hyper-parameters with GridSearchCV and an OOD scorer
======================================================================

The validation set mixes in-distribution rows (their class label) and OOD
rows (label -1). ``fit`` ignores the OOD rows, the scorer uses both. The
folds must be stratified and shuffled so that every test fold holds ID and
OOD rows: GridSearchCV's default for a detector is an unshuffled KFold.

Runs offline in seconds: ``python examples/grid_search_logit_detector.py``.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from sklearn_ood.detectors import GEN
from sklearn_ood.metrics import ood_report, ood_scorer


def main():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    is_id = y < 5
    X_train, X_rest, y_train, y_rest = train_test_split(
        X[is_id], y[is_id], test_size=0.5, random_state=0, stratify=y[is_id]
    )
    X_val, X_test, y_val, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest
    )
    clf = LogisticRegression(C=0.1, max_iter=2000).fit(X_train, y_train)

    # Near-OOD digits 5-9: half to tune on, half to report on.
    X_ood_val, X_ood_test = train_test_split(X[~is_id], test_size=0.5, random_state=0)
    logits_val = clf.decision_function(np.vstack([X_val, X_ood_val]))
    labels_val = np.r_[y_val, -np.ones(len(X_ood_val), int)]

    search = GridSearchCV(
        GEN(),
        {"gamma": [0.01, 0.1, 0.5, 0.9], "top_m": [1, 2, 5]},
        scoring={"neg_fpr95": ood_scorer("neg_fpr95"), "auroc": ood_scorer("auroc")},
        refit="neg_fpr95",
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
    ).fit(logits_val, labels_val)
    print("best parameters:", search.best_params_)
    # best_score_ is the negated FPR95 of the best candidate (higher is better)
    print(f"cross-validated FPR@95TPR: {-search.best_score_:.3f}")

    logits_test = clf.decision_function(np.vstack([X_test, X_ood_test]))
    labels_test = np.r_[y_test, -np.ones(len(X_ood_test), int)]
    report = ood_report(labels_test, search.best_estimator_.score_samples(logits_test))
    print("held-out test:", {k: round(v, 3) for k, v in report.items()})


if __name__ == "__main__":
    main()
