"""
=======================================================================
Tune ODIN's temperature and input step with GridSearchCV, on raw images
=======================================================================

ODIN runs the model itself (a backward pass for the input perturbation), so
it takes images, not features: ``GridSearchCV(ODIN(model), ...)`` works like
any scikit-learn search. The model is shared between the candidates, never
copied. The validation set mixes in-distribution images (their class label)
and OOD images (label -1): ``fit`` ignores the OOD rows, the ``neg_fpr95``
scorer (minus the FPR at 95 % TPR) uses both. The folds are stratified and
shuffled so that every test fold holds ID and OOD rows.

Detectors that only read a layer's features are cheaper to tune: extract
the features once with ``TorchFeatureTransformer`` and search the detector
alone (second half).

A small CNN is trained on scikit-learn's bundled 8x8 digits 0-4 (ID); the
digits 5-9 are the OOD data, uniform noise a far-OOD test set. Runs offline
in seconds: ``python examples/grid_search_odin.py``.
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from torch import nn

from sklearn_ood.detectors import Mahalanobis
from sklearn_ood.metrics import ood_report, ood_scorer
from sklearn_ood.torch import ODIN, DigitsCNN, TorchFeatureTransformer


def train(model, X, y, epochs=10, seed=0):
    """A few epochs of Adam on the cross-entropy; the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)  # the batch order
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(X), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def rounded(report):
    return {name: round(value, 3) for name, value in report.items()}


def main():
    # A tiny model: one thread is fastest, and it stays fast when other jobs
    # share the CPU cores.
    torch.set_num_threads(1)
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8)
    y = digits.target
    is_id = y < 5
    X_train, X_rest, y_train, y_rest = train_test_split(
        X[is_id], y[is_id], test_size=0.5, random_state=0, stratify=y[is_id]
    )
    X_val, X_test, y_val, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest
    )
    X_ood_val, X_ood_test = train_test_split(X[~is_id], test_size=0.5, random_state=0)
    X_noise = np.random.default_rng(0).random((300, 1, 8, 8), dtype=np.float32)

    torch.manual_seed(0)  # the initial weights
    model = train(DigitsCNN(n_classes=5, width=8), X_train, y_train)
    with torch.no_grad():
        accuracy = (model(torch.as_tensor(X_test)).argmax(1).numpy() == y_test).mean()
    print(f"CNN accuracy on held-out digits 0-4: {accuracy:.3f}")

    # Validation: ID rows keep their label, OOD rows get -1.
    X_tune = np.concatenate([X_val, X_ood_val])
    y_tune = np.r_[y_val, -np.ones(len(X_ood_val), int)]
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)

    # 1) ODIN on raw images: every candidate runs the model.
    search = GridSearchCV(
        ODIN(model),
        {"temperature": [1, 10, 100, 1000], "epsilon": [0, 0.0007, 0.0014]},
        scoring=ood_scorer("neg_fpr95"),
        cv=cv,
    ).fit(X_tune, y_tune)
    print("ODIN best parameters:", search.best_params_)
    print(f"ODIN cross-validated FPR@95TPR: {-search.best_score_:.3f}")
    odin = search.best_estimator_
    assert odin.model is model  # shared, not copied

    for name, X_ood in (("digits 5-9", X_ood_test), ("noise", X_noise)):
        X_eval = np.concatenate([X_test, X_ood])
        y_eval = np.r_[y_test, -np.ones(len(X_ood), int)]
        report = ood_report(y_eval, odin.score_samples(X_eval))
        print(f"ODIN held-out test vs {name}:", rounded(report))

    # 2) The cheaper path: penultimate features extracted once, then only the
    # feature detector is refitted per candidate (no model call in the search).
    features = TorchFeatureTransformer(model, layer="penultimate").fit(X_train)
    search = GridSearchCV(
        Mahalanobis(),
        {
            "covariance_estimator": ["empirical", "ledoit_wolf"],
            "reg_covar": [0.0, 1e-3, 1e-1],
        },
        scoring=ood_scorer("neg_fpr95"),
        cv=cv,
    ).fit(features.transform(X_tune), y_tune)
    print("Mahalanobis best parameters:", search.best_params_)
    print(f"Mahalanobis cross-validated FPR@95TPR: {-search.best_score_:.3f}")
    # Refit the chosen detector on the training features and report.
    mahalanobis = Mahalanobis(**search.best_params_).fit(
        features.transform(X_train), y_train
    )
    for name, X_ood in (("digits 5-9", X_ood_test), ("noise", X_noise)):
        X_eval = features.transform(np.concatenate([X_test, X_ood]))
        y_eval = np.r_[y_test, -np.ones(len(X_ood), int)]
        report = ood_report(y_eval, mahalanobis.score_samples(X_eval))
        print(f"Mahalanobis held-out test vs {name}:", rounded(report))


if __name__ == "__main__":
    main()
