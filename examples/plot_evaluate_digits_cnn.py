"""
===============================================================
Evaluate feature, head-aware and logit detectors on a small CNN
===============================================================

The workflow behind ``sklearn-ood benchmark``, written out: load the offline
digits OOD benchmark, train a small CNN on the in-distribution digits 0-4,
then let :func:`~sklearn_ood.evaluation.evaluate` fit and score several
detectors from *one* feature extraction per input set (logits for Energy,
penultimate features for the others). The results come back as one table,
and the scores feed the plotting displays: ROC curves of every detector on
the near-OOD set, and the score histograms of the best one with its
threshold.

Runs offline in a few seconds on a CPU.
"""

# %%
# Data and model
# --------------
# ``load_digits_ood`` splits scikit-learn's bundled digits into ID train/test
# images and named OOD sets (held-out digits, ODIN's noise, inverted and
# flipped digits). A ``DigitsCNN`` trains on the ID rows through skorch.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from sklearn_ood.datasets import load_digits_ood
from sklearn_ood.detectors import KNN, Energy, Mahalanobis, MaxSoftmax, ViM
from sklearn_ood.evaluation import evaluate
from sklearn_ood.plotting import OODRocCurveDisplay, OODScoreDisplay
from sklearn_ood.torch import (
    DigitsCNN,
    IDCrossEntropyLoss,
    OODNeuralNetClassifier,
    TorchFeatureTransformer,
)

digits = load_digits_ood(id_classes=(0, 1, 2, 3, 4), random_state=0)
torch.manual_seed(0)
net = OODNeuralNetClassifier(
    DigitsCNN(n_classes=5),
    criterion=IDCrossEntropyLoss,
    optimizer=torch.optim.Adam,
    lr=0.01,
    max_epochs=15,
    batch_size=64,
    train_split=None,
    verbose=0,
    random_state=0,
).fit(digits.data, digits.target)
model = net.module_.eval()
accuracy = np.mean(net.predict(digits.data_test) == digits.target_test)
print(f"ID test accuracy: {accuracy:.3f}")

# %%
# One extraction, five detectors
# ------------------------------
# Detectors built with ``contamination=None`` learn no threshold: the metrics
# do not need one. ViM also takes the network's head, its last ``nn.Linear``.
detectors = {
    "MaxSoftmax": MaxSoftmax(contamination=None),
    "Energy": Energy(contamination=None),
    "Mahalanobis": Mahalanobis(contamination=None),
    "KNN": KNN(n_neighbors=10, contamination=None),
    "ViM": ViM(model.fc, contamination=None),
}
test_sets = {"id": digits.data_test, **digits.ood}
table, details = evaluate(
    detectors,
    digits.data,
    digits.target,
    test_sets,
    transformer=TorchFeatureTransformer(model, device="cpu"),
    return_details=True,
)
mean = table[table["ood_set"] == "mean"].set_index("detector")
print(mean[["auroc", "fpr95", "fit_seconds", "score_seconds"]].round(3))

# %%
# ROC curves on the near-OOD set
# ------------------------------
# ID is the positive class: the true positive rate is the share of ID inputs
# kept, the false positive rate the share of OOD inputs accepted; the dot marks
# the 95 %-TPR operating point behind FPR95.
near = "held-out-digits"
n_id, n_ood = len(digits.data_test), len(digits.ood[near])
y = np.r_[np.zeros(n_id, dtype=int), -np.ones(n_ood, dtype=int)]
scores = {
    name: np.r_[per_set["id"], per_set[near]]
    for name, per_set in details.scores.items()
}
roc = OODRocCurveDisplay.from_predictions(y, scores)
roc.ax_.set_title(f"ID digits 0-4 against {near}")

# %%
# The best detector's scores, with a threshold
# --------------------------------------------
# A detector fitted with the default ``contamination=0.05`` rejects 5 % of
# its ID fit rows: its ``offset_`` is drawn as the threshold.
best = mean["auroc"].idxmax()
pipe = make_pipeline(
    TorchFeatureTransformer(model, layer=details.layers[best], device="cpu"),
    clone(detectors[best]).set_params(contamination=0.05),
).fit(digits.data, digits.target)
X_test = np.concatenate([digits.data_test, digits.ood[near]])
display = OODScoreDisplay.from_estimator(pipe, X_test, y, name=best)
display.ax_.set_title(f"{best}: ID test digits vs {near}")
plt.show()
