"""OOD fine-tuning on real data, and the training overhead of the skorch net.

Two measurements, all offline:

1. **Fine-tuning table.** Per seed, a base classifier is trained with the
   plain cross-entropy (:class:`~sklearn_ood.torch.IDCrossEntropyLoss`
   through :class:`~sklearn_ood.torch.OODNeuralNetClassifier`, no
   outliers; SGD, momentum 0.9, weight decay 5e-4, a cosine schedule per
   epoch), then copies of it are fine-tuned with

   * ``Energy``: :class:`~sklearn_ood.torch.EnergyRegularizedLoss`, margins
     from :func:`~sklearn_ood.torch.energy_margins` of the base model on the
     ID training rows and on the auxiliary outliers (the mean energies, as
     the energy paper's author advises for a new model), alpha 0.1;
   * ``OE``: :class:`~sklearn_ood.torch.OutlierExposureLoss`, alpha 0.5;
   * ``UM``: :class:`~sklearn_ood.torch.UnleashingMaskLoss` at the level of
     :func:`~sklearn_ood.torch.estimate_um_level` (keep 0.965, seeded), no
     outliers;
   * ``UM+OE`` / ``UM+Energy``: the same flood plus the OE / energy outlier
     term (same alpha and margins as above);
   * ``UMAP``: :func:`~sklearn_ood.torch.add_learnable_masks` on the base
     model (keep 0.8, weights frozen), its scores trained with the UM loss
     (SGD lr 0.1, weight decay 1e-4 on the scores, as the UM repository),
     then :func:`~sklearn_ood.torch.apply_masks`;
   * ``POEM`` / ``POEM+UM``: the ``Energy`` / ``UM+Energy`` losses with
     ``outlier_mining="poem"`` (Thompson sampling on the penultimate
     features, the reference's settings), each epoch mining half the
     auxiliary pool (``n_selected`` = the number of ID training rows, each
     mined outlier then seen twice per epoch at 1:2);
   * ``DOE`` / ``DOE+UM``: ``OutlierExposureLoss(alpha=1.0)`` (DOE's
     weight) / the ``UM+OE`` flood with ``alpha=1.0``, with
     ``weight_perturbation="doe"`` (the reference's gamma, smoothing and
     clipping), the first half of the epochs plain (the reference's
     warm-up: 5 of 10);
   * ``Objectosphere``: :class:`~sklearn_ood.torch.ObjectosphereLoss` on
     :class:`~sklearn_ood.torch.WithFeatures` (penultimate features), xi =
     the base model's mean ID feature norm, alpha = 1 / xi^2 (the feature
     terms of order 1); ``Confidence``:
     :class:`~sklearn_ood.torch.ConfidenceLoss` on a new confidence branch
     (:class:`~sklearn_ood.torch.WithConfidence`), alpha 1, no outliers
     (scored here by the logits, not by the confidence); ``Background``:
     :class:`~sklearn_ood.torch.BackgroundClassLoss`, the base model's last
     layer grown by a zero-initialised background output (scored by the ID
     logits); ``EnergyMargin``: :class:`~sklearn_ood.torch.EnergyMarginLoss`
     (SCONE's defaults, L0 = the base model's mean training cross-entropy,
     multipliers updated after every epoch); ``VOS``:
     :class:`~sklearn_ood.torch.VOSRegLoss` on ``WithFeatures``, alpha 0.1,
     the auxiliary outliers plus virtual outliers (queues of 50 features per
     class, 1 of 1000 draws kept per class and step).
   * Centre losses on the logits (the embedding, one dimension per class),
     each also scored by its paired detector (a third table, "paired"):
     ``Center``: :class:`~sklearn_ood.torch.CenterLoss`, centres started at
     the base model's class-mean training logits, scored by
     :class:`~sklearn_ood.detectors.CenterDistance` on the learned
     centres; ``CAC``: :class:`~sklearn_ood.torch.CACLoss` (magnitude 10,
     weight 0.1), scored by :class:`~sklearn_ood.detectors.CACScore` on
     the class-mean training outputs (the authors' evaluation); ``II``:
     :class:`~sklearn_ood.torch.IILoss`, scored by ``CenterDistance`` on
     the class-mean training outputs; ``MCHAD``:
     :class:`~sklearn_ood.torch.MCHADLoss` with the auxiliary outliers,
     centres started as for ``Center``, margin = twice the base model's
     root-mean-square distance of the training logits to their class
     mean, scored by ``CenterDistance`` on the learned centres;
     ``DeepSVDD`` / ``DeepSAD``: :class:`~sklearn_ood.torch.DeepSVDDLoss`
     / :class:`~sklearn_ood.torch.DeepSADLoss` (with the auxiliary
     outliers), centre = the base model's mean training logit, scored by
     ``CenterDistance`` on that centre (one-class losses: the logits
     stop being a classifier's, so their ID accuracy falls).

   Every fine-tuning uses ``finetune_preset("energy_oe")`` (SGD, momentum
   0.9, Nesterov, weight decay 5e-4, per-step cosine, outliers at 1:2)
   with a shorter, hotter schedule fitted to the small data (see
   ``CONFIGS``: epochs, ID batch size, lr). Each model is scored with the
   Energy and the MSP detectors (:class:`~sklearn_ood.detectors.Energy`,
   :class:`~sklearn_ood.detectors.MaxSoftmax`, fitted on the ID training
   logits) on the ID test rows against a near and a far OOD set: ID test
   accuracy, AUROC and FPR95 (ID positive: the fraction of OOD accepted
   when 95 % of the ID test rows are), mean +- std over the seeds.

2. **Training overhead.** One epoch of OE fine-tuning through
   ``OODNeuralNetClassifier.partial_fit`` (net initialised beforehand)
   against a bare torch loop on the same data, model, optimizer and batch
   composition (``b`` shuffled ID rows + ``2b`` outlier rows per batch),
   alternated in the same process; the ratio is the median over the pairs
   of ours / bare wall-clock time (1.0 = no overhead).

Data
----
``digits`` (default; scikit-learn's ``load_digits``, 1 x 8 x 8, scaled to
[0, 1]): ID = digits 0-4 (a stratified 60 / 40 train / test split drawn
per seed), near OOD = digits 5-9, far OOD = inverted digits 5-9
(``1 - x``). ``fashion`` (``--dataset fashion``; Fashion-MNIST from the
Debian package ``dataset-fashion-mnist``, idx files under
``/usr/share/datasets/fashion-mnist/``, read by
:func:`~sklearn_ood.datasets.load_fashion_mnist`, 1 x 28 x 28): ID = classes 0-4
(T-shirt, trouser, pullover, dress, coat), near OOD = classes 5-9 (sandal,
shirt, sneaker, bag, ankle boot) of the test set, far OOD = scikit-learn's
digits upscaled to 28 x 28; the training rows are subsampled (``CONFIGS``).

Auxiliary outliers (training only, twice as many as the ID training rows,
built from them per seed): half are ID training images with their pixels
randomly permuted (one permutation per image), half are pixel-wise averages
of two ID training images of different classes, blurred by a 3 x 3 box
filter. Neither is a test OOD set: the test sets are unseen classes,
inverted images and another dataset.

    python benchmarks/bench_training.py                     # digits, 3 seeds
    python benchmarks/bench_training.py --seeds 5
    python benchmarks/bench_training.py --dataset fashion   # ~15 min, 2 cores
    python benchmarks/bench_training.py --quick             # smoke run, seconds
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import _bench_env  # noqa: E402

# Thread counts must be in the environment before NumPy / torch load.
_bench_env.configure(sys.argv)

import argparse  # noqa: E402
import copy  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from skorch.callbacks import Callback, LRScheduler  # noqa: E402

from sklearn_ood.datasets import load_fashion_mnist  # noqa: E402
from sklearn_ood.detectors import (  # noqa: E402
    CACScore,
    CenterDistance,
    Energy,
    MaxSoftmax,
)
from sklearn_ood.metrics import auroc, fpr_at_tpr  # noqa: E402
from sklearn_ood.torch import (  # noqa: E402
    BackgroundClassLoss,
    CACLoss,
    CenterLoss,
    ConfidenceLoss,
    DeepSADLoss,
    DeepSVDDLoss,
    DigitsCNN,
    EnergyMarginLoss,
    EnergyRegularizedLoss,
    FashionCNN,
    IDCrossEntropyLoss,
    IILoss,
    MCHADLoss,
    ObjectosphereLoss,
    OODNeuralNetClassifier,
    OutlierExposureLoss,
    TorchFeatureTransformer,
    UnleashingMaskLoss,
    VOSRegLoss,
    WithBackgroundClass,
    WithConfidence,
    WithFeatures,
    add_learnable_masks,
    apply_masks,
    energy_margins,
    estimate_um_level,
    finetune_preset,
)

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
METHODS = (
    "CE (base)",
    "Energy",
    "OE",
    "UM",
    "UM+OE",
    "UM+Energy",
    "UMAP",
    "POEM",
    "POEM+UM",
    "DOE",
    "DOE+UM",
    "Objectosphere",
    "Confidence",
    "Background",
    "EnergyMargin",
    "VOS",
    "Center",
    "CAC",
    "II",
    "MCHAD",
    "DeepSVDD",
    "DeepSAD",
)
SCORES = (("energy", Energy), ("msp", MaxSoftmax))

# Per dataset: model, base training, fine-tuning schedule, subsampling.
CONFIGS = {
    "digits": {
        "model": DigitsCNN,
        "base": {"max_epochs": 30, "batch_size": 64, "lr": 0.05},
        "finetune": {"max_epochs": 10, "batch_size": 32, "lr": 0.01},
        "umap": {"max_epochs": 10, "batch_size": 32, "lr": 0.1},
        "n_train": None,  # the whole 60 % split (about 540 rows)
        "n_test": None,
    },
    "fashion": {
        "model": FashionCNN,
        "base": {"max_epochs": 15, "batch_size": 128, "lr": 0.05},
        "finetune": {"max_epochs": 2, "batch_size": 64, "lr": 0.01},
        "umap": {"max_epochs": 2, "batch_size": 64, "lr": 0.1},
        "n_train": 6000,
        "n_test": 2000,
    },
}
QUICK = {
    "base": {"max_epochs": 2, "batch_size": 64, "lr": 0.05},
    "finetune": {"max_epochs": 1, "batch_size": 64, "lr": 0.01},
    "umap": {"max_epochs": 1, "batch_size": 64, "lr": 0.1},
    "n_train": 200,
    "n_test": 150,
}


# --------------------------------------------------------------------- data
def load_fashion(directory=FASHION_DIR):
    """Fashion-MNIST as float32 ``(N, 1, 28, 28)`` in [0, 1], or None if absent."""
    try:
        full = load_fashion_mnist(directory)
    except FileNotFoundError:
        return None
    return {
        "X_train": (full.data.astype(np.float32) / 255.0)[:, None],
        "y_train": full.target.astype(np.int64),
        "X_test": (full.data_test.astype(np.float32) / 255.0)[:, None],
        "y_test": full.target_test.astype(np.int64),
    }


def _digits():
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]
    return X, digits.target.astype(np.int64)


def _stratified_take(y, n, rng):
    """Indices of about ``n`` rows of ``y``, stratified (all rows if n is None)."""
    idx = rng.permutation(len(y))
    if n is None or n >= len(y):
        return idx
    classes = np.unique(y)
    per_class = max(1, n // len(classes))
    return np.concatenate([idx[y[idx] == c][:per_class] for c in classes])


def make_aux(X, y, rng):
    """Auxiliary outliers: 2 per ID training image (permuted / blurred mixtures)."""
    n = len(X)
    flat = X.reshape(n, -1)
    # half: each image with its own random pixel permutation
    rows = rng.integers(0, n, size=n)
    perms = np.argsort(rng.random((n, flat.shape[1])), axis=1)
    permuted = np.take_along_axis(flat[rows], perms, axis=1).reshape(X[rows].shape)
    # half: average of two images of different classes, 3 x 3 box blur
    a = rng.integers(0, n, size=n)
    b = rng.integers(0, n, size=n)
    clash = y[a] == y[b]
    while clash.any():
        b[clash] = rng.integers(0, n, size=int(clash.sum()))
        clash = y[a] == y[b]
    mixed = torch.from_numpy(0.5 * (X[a] + X[b]))
    blurred = torch.nn.functional.avg_pool2d(
        mixed, 3, stride=1, padding=1, count_include_pad=False
    ).numpy()
    return np.concatenate([permuted, blurred]).astype(np.float32)


def make_split(dataset, seed, quick, fashion=None):
    """One seed's data: ID train / test, near and far OOD, auxiliary outliers."""
    rng = np.random.default_rng(seed)
    cfg = QUICK if quick else CONFIGS[dataset]
    if dataset == "digits":
        X, y = _digits()
        id_rows = np.flatnonzero(y < 5)
        id_rows = id_rows[rng.permutation(len(id_rows))]
        # stratified 60 / 40 split of the ID digits
        train, test = [], []
        for c in range(5):
            rows = id_rows[y[id_rows] == c]
            cut = int(round(0.6 * len(rows)))
            train.append(rows[:cut])
            test.append(rows[cut:])
        train, test = np.concatenate(train), np.concatenate(test)
        train = train[_stratified_take(y[train], cfg["n_train"], rng)]
        test = test[_stratified_take(y[test], cfg["n_test"], rng)]
        near = X[y >= 5]
        if cfg["n_test"] is not None:
            near = near[rng.permutation(len(near))[: cfg["n_test"]]]
        far = 1.0 - near
        X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
        far_name = "inverted digits 5-9"
    else:
        Xtr, ytr, Xte, yte = (
            fashion["X_train"],
            fashion["y_train"],
            fashion["X_test"],
            fashion["y_test"],
        )
        in_tr = np.flatnonzero(ytr < 5)
        train = in_tr[_stratified_take(ytr[in_tr], cfg["n_train"], rng)]
        in_te = np.flatnonzero(yte < 5)
        test = in_te[_stratified_take(yte[in_te], cfg["n_test"], rng)]
        out_te = np.flatnonzero(yte >= 5)
        n_near = len(out_te) if cfg["n_test"] is None else cfg["n_test"]
        near = Xte[rng.permutation(out_te)[:n_near]]
        digits, _ = _digits()
        far = torch.nn.functional.interpolate(
            torch.from_numpy(digits), size=(28, 28), mode="bilinear"
        ).numpy()
        far = far[rng.permutation(len(far))[:n_near]]
        X_train, y_train, X_test, y_test = Xtr[train], ytr[train], Xte[test], yte[test]
        far_name = "scikit-learn digits upscaled to 28x28"
    aux = make_aux(X_train, y_train, rng)
    return {
        "X_train": np.ascontiguousarray(X_train),
        "y_train": y_train,
        "X_test": np.ascontiguousarray(X_test),
        "y_test": y_test,
        "near": np.ascontiguousarray(near, dtype=np.float32),
        "far": np.ascontiguousarray(far, dtype=np.float32),
        "aux": aux,
        "far_name": far_name,
    }


# ----------------------------------------------------------------- training
def logits_of(module, X):
    return TorchFeatureTransformer(module, layer="logits", device="cpu").fit_transform(
        X
    )


def _net(module, criterion, schedule, seed, **params):
    preset = finetune_preset("energy_oe")
    preset.update(schedule)
    preset.update(params)
    return OODNeuralNetClassifier(
        module, criterion=criterion, verbose=0, random_state=seed, **preset
    )


class _UpdateMultipliers(Callback):
    """EnergyMarginLoss: the augmented-Lagrangian update after every epoch."""

    def on_epoch_end(self, net, **kwargs):
        net.criterion_.update_hyperparameters()


class _DropBackground(torch.nn.Module):
    """The ID logits of a model with a background output (its last)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[:, :-1]


def _with_background_output(module):
    """A copy of ``module`` whose ``fc`` has one more, zero-initialised output."""
    module = copy.deepcopy(module)
    fc = module.fc
    grown = torch.nn.Linear(fc.in_features, fc.out_features + 1)
    with torch.no_grad():
        grown.weight.zero_()
        grown.bias.zero_()
        grown.weight[:-1] = fc.weight
        grown.bias[:-1] = fc.bias
    module.fc = grown
    return module


def _openset_runs(base_module, X, y):
    """Issue 11's open-set losses: (module to fit, criterion, params, aux?, unwrap)."""
    logits = logits_of(base_module, X)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_proba = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    full_ce = float(-log_proba[np.arange(len(y)), y].mean())
    features = TorchFeatureTransformer(
        base_module, layer="penultimate", device="cpu"
    ).fit_transform(X)
    xi = float(np.linalg.norm(features, axis=1).mean())
    callbacks = [*finetune_preset("energy_oe")["callbacks"]]
    callbacks.append(("multipliers", _UpdateMultipliers()))
    n_classes = int(logits.shape[1])
    with_features = WithFeatures(base_module)
    return {
        "Objectosphere": (
            with_features,
            ObjectosphereLoss,
            {"criterion__alpha": 1.0 / xi**2, "criterion__xi": xi},
            True,
            lambda m: m.model,
        ),
        "Confidence": (
            WithConfidence(base_module),
            ConfidenceLoss,
            {},
            False,
            lambda m: m.model,
        ),
        "Background": (
            WithBackgroundClass(_with_background_output(base_module)),
            BackgroundClassLoss,
            {},
            True,
            lambda m: _DropBackground(m.model),
        ),
        "EnergyMargin": (
            base_module,
            EnergyMarginLoss,
            {"criterion__full_train_loss": full_ce, "callbacks": callbacks},
            True,
            lambda m: m,
        ),
        "VOS": (
            with_features,
            VOSRegLoss,
            {
                "criterion__n_classes": n_classes,
                "criterion__sample_number": 50,
                "criterion__sample_from": 1000,
            },
            True,
            lambda m: m.model,
        ),
    }


def _center_runs(base_module, X, y):
    """Issue 11's centre losses: (criterion, params, aux?, paired detector of
    the fitted net); the centres start from the base model's logits."""
    logits = logits_of(base_module, X).astype(np.float64)
    n_classes = int(logits.shape[1])
    means = np.array([logits[y == c].mean(axis=0) for c in range(n_classes)])
    rms = float(np.sqrt(((logits - means[y]) ** 2).sum(axis=1).mean()))
    center = logits.mean(axis=0)
    dims = {"criterion__n_classes": n_classes, "criterion__n_dim": n_classes}

    def learned(net):
        return CenterDistance(net.criterion_.centers.detach().cpu().numpy().copy())

    return {
        "Center": (
            CenterLoss,
            {**dims, "criterion__initial_centers": means},
            False,
            learned,
        ),
        "CAC": (
            CACLoss,
            {"criterion__n_classes": n_classes},
            False,
            lambda net: CACScore("class_means"),
        ),
        "II": (IILoss, dims, False, lambda net: CenterDistance("class_means")),
        "MCHAD": (
            MCHADLoss,
            {**dims, "criterion__initial_centers": means, "criterion__margin": 2 * rms},
            True,
            learned,
        ),
        "DeepSVDD": (
            DeepSVDDLoss,
            {"criterion__n_dim": n_classes, "criterion__initial_center": center},
            False,
            learned,
        ),
        "DeepSAD": (
            DeepSADLoss,
            {"criterion__n_dim": n_classes, "criterion__initial_center": center},
            True,
            learned,
        ),
    }


def train_all(data, cfg, seed):
    """The base model and its fine-tuned copies, as plain eval-mode modules."""
    torch.manual_seed(seed)
    model = cfg["model"](n_classes=5)
    base = OODNeuralNetClassifier(
        model,
        criterion=IDCrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        optimizer__weight_decay=5e-4,
        train_split=None,
        verbose=0,
        random_state=seed,
        callbacks=[
            (
                "lr_scheduler",
                LRScheduler(
                    policy=torch.optim.lr_scheduler.CosineAnnealingLR,
                    T_max=cfg["base"]["max_epochs"],
                ),
            )
        ],
        **cfg["base"],
    ).fit(data["X_train"], data["y_train"])
    base_module = base.module_.eval()
    X, y, aux = data["X_train"], data["y_train"], data["aux"]

    m_in, m_out = energy_margins(logits_of(base_module, X), logits_of(base_module, aux))
    level = estimate_um_level(base_module, X, y, keep=0.965, random_state=seed)
    ft = cfg["finetune"]
    energy = {
        "criterion__alpha": 0.1,
        "criterion__margin_in": m_in,
        "criterion__margin_out": m_out,
    }
    runs = {
        "Energy": (EnergyRegularizedLoss, energy, True),
        "OE": (OutlierExposureLoss, {"criterion__alpha": 0.5}, True),
        "UM": (UnleashingMaskLoss, {"criterion__level": level}, False),
        "UM+OE": (
            UnleashingMaskLoss,
            {"criterion__level": level, "criterion__outlier_loss": "oe"},
            True,
        ),
        "UM+Energy": (
            UnleashingMaskLoss,
            {"criterion__level": level, "criterion__outlier_loss": "energy", **energy},
            True,
        ),
    }
    # POEM: the energy loss on outliers mined each epoch (half the pool);
    # DOE: OE (weight 1, as DOE) under weight perturbation, half the epochs
    # of plain OE first (the reference: 5 of 10).
    poem = {"outlier_mining": "poem", "outlier_mining__n_selected": len(aux) // 2}
    doe = {
        "weight_perturbation": "doe",
        "weight_perturbation__warmup": ft["max_epochs"] // 2,
    }
    um_level = {"criterion__level": level}
    runs["POEM"] = (EnergyRegularizedLoss, {**energy, **poem}, True)
    runs["POEM+UM"] = (
        UnleashingMaskLoss,
        {**um_level, "criterion__outlier_loss": "energy", **energy, **poem},
        True,
    )
    runs["DOE"] = (OutlierExposureLoss, {"criterion__alpha": 1.0, **doe}, True)
    runs["DOE+UM"] = (
        UnleashingMaskLoss,
        {
            **um_level,
            "criterion__outlier_loss": "oe",
            "criterion__alpha": 1.0,
            **doe,
        },
        True,
    )
    modules = {"CE (base)": base_module}
    for name, (criterion, params, with_aux) in runs.items():
        net = _net(base_module, criterion, ft, seed, **params)
        net.fit(X, y, outliers=aux if with_aux else None)
        modules[name] = net.module_.eval()

    # Issue 11's open-set losses: wrapped models, evaluated on their logits.
    openset = _openset_runs(base_module, X, y)
    for name, (module, criterion, params, with_aux, unwrap) in openset.items():
        net = _net(module, criterion, ft, seed, **params)
        net.fit(X, y, outliers=aux if with_aux else None)
        modules[name] = unwrap(net.module_).eval()

    # Issue 11's centre losses, each with its paired detector (unfitted).
    paired = {}
    for name, (criterion, params, with_aux, detector) in _center_runs(
        base_module, X, y
    ).items():
        net = _net(base_module, criterion, ft, seed, **params)
        net.fit(X, y, outliers=aux if with_aux else None)
        modules[name] = net.module_.eval()
        paired[name] = detector(net)

    masked = add_learnable_masks(base_module, keep=0.8, random_state=seed)
    net = _net(
        masked,
        UnleashingMaskLoss,
        cfg["umap"],
        seed,
        criterion__level=level,
        optimizer__weight_decay=1e-4,
        optimizer__nesterov=False,
    ).fit(X, y)
    modules["UMAP"] = apply_masks(net.module_).eval()
    return modules, {
        "margin_in": m_in,
        "margin_out": m_out,
        "level": level,
        "paired": paired,
    }


def evaluate(module, data):
    """ID accuracy and, per score and OOD set, AUROC and FPR95 (in %)."""
    fit_logits = logits_of(module, data["X_train"])
    test_logits = logits_of(module, data["X_test"])
    out = {"acc": 100.0 * np.mean(test_logits.argmax(axis=1) == data["y_test"])}
    ood_logits = {s: logits_of(module, data[s]) for s in ("near", "far")}
    for score_name, detector in SCORES:
        det = detector().fit(fit_logits)
        s_id = det.score_samples(test_logits)
        for split, logits in ood_logits.items():
            s_ood = det.score_samples(logits)
            y_true = np.r_[np.zeros(len(s_id), int), -np.ones(len(s_ood), int)]
            scores = np.r_[s_id, s_ood]
            out[(score_name, split, "auroc")] = 100.0 * auroc(y_true, scores)
            out[(score_name, split, "fpr95")] = 100.0 * fpr_at_tpr(y_true, scores)
    return out


def evaluate_paired(module, detector, data):
    """AUROC and FPR95 (in %) of a centre loss's paired detector on the logits,
    fitted on the ID training logits and labels."""
    det = detector.fit(logits_of(module, data["X_train"]), data["y_train"])
    s_id = det.score_samples(logits_of(module, data["X_test"]))
    out = {"paired_name": type(det).__name__}
    for split in ("near", "far"):
        s_ood = det.score_samples(logits_of(module, data[split]))
        y_true = np.r_[np.zeros(len(s_id), int), -np.ones(len(s_ood), int)]
        scores = np.r_[s_id, s_ood]
        out[("paired", split, "auroc")] = 100.0 * auroc(y_true, scores)
        out[("paired", split, "fpr95")] = 100.0 * fpr_at_tpr(y_true, scores)
    return out


def print_paired_table(results, n_seeds):
    """The centre losses scored by their paired detectors."""
    header = [
        "method",
        "detector",
        "near AUROC",
        "near FPR95",
        "far AUROC",
        "far FPR95",
    ]
    rows = []
    for method in METHODS:
        res = results[method]
        if not res or "paired_name" not in res[0]:
            continue
        row = [method, res[0]["paired_name"]]
        for split in ("near", "far"):
            for metric in ("auroc", "fpr95"):
                row.append(_fmt([r[("paired", split, metric)] for r in res]))
        rows.append(row)
    if not rows:
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(6)]
    print(f"\nPaired detectors of the centre losses (%, over {n_seeds} seed(s))")
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


# ----------------------------------------------------------------- overhead
def _bare_epoch(model, optimizer, criterion, X, y, aux, batch_size, ratio, gen):
    model.train()
    n_out = max(1, round(ratio * batch_size))
    X_t, y_t, A_t = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(aux)
    order = torch.randperm(len(X), generator=gen)
    pool = torch.randperm(len(aux), generator=gen)
    pos = 0
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        k = max(1, round(ratio * len(idx))) if len(idx) < batch_size else n_out
        if pos + k > len(pool):
            pool, pos = torch.randperm(len(aux), generator=gen), 0
        out_idx = pool[pos : pos + k]
        pos += k
        xb = torch.cat([X_t[idx], A_t[out_idx]])
        yb = torch.cat([y_t[idx], torch.full((k,), -1, dtype=y_t.dtype)])
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()


def measure_overhead(data, cfg, seed, repeats):
    """Median (ours / bare) time of one OE epoch, and the best times."""
    X, y, aux = data["X_train"], data["y_train"], data["aux"]
    batch_size = cfg["finetune"]["batch_size"]
    torch.manual_seed(seed)
    model = cfg["model"](n_classes=5)
    opt_kw = {"lr": 0.01, "momentum": 0.9}

    net = OODNeuralNetClassifier(
        copy.deepcopy(model),
        criterion=OutlierExposureLoss,
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        lr=0.01,
        batch_size=batch_size,
        outlier_ratio=2,
        max_epochs=1,
        train_split=None,
        verbose=0,
        random_state=seed,
    ).initialize()
    bare_model = copy.deepcopy(model)
    bare_opt = torch.optim.SGD(bare_model.parameters(), **opt_kw)
    criterion = OutlierExposureLoss()
    gen = torch.Generator().manual_seed(seed)

    def ours():
        net.partial_fit(X, y, outliers=aux)

    def bare():
        _bare_epoch(bare_model, bare_opt, criterion, X, y, aux, batch_size, 2, gen)

    ours()
    bare()  # warm-up
    ratios, t_ours, t_bare = [], [], []
    for i in range(repeats):
        pair = {}
        for name, fn in (("bare", bare), ("ours", ours))[:: 1 if i % 2 else -1]:
            t0 = time.perf_counter()
            fn()
            pair[name] = time.perf_counter() - t0
        ratios.append(pair["ours"] / pair["bare"])
        t_ours.append(pair["ours"])
        t_bare.append(pair["bare"])
    n_batches = -(-len(X) // batch_size)
    return {
        "ratio": float(np.median(ratios)),
        "ours": min(t_ours),
        "bare": min(t_bare),
        "batches": n_batches,
        "batch_rows": f"{batch_size} ID + {2 * batch_size} outliers",
    }


# ------------------------------------------------------------------- report
def _fmt(values, digits=1):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} +- {values.std(ddof=1):.{digits}f}"


def print_tables(results, n_seeds):
    for score_name, _ in SCORES:
        header = [
            "method",
            "ID acc",
            "near AUROC",
            "near FPR95",
            "far AUROC",
            "far FPR95",
        ]
        rows = []
        for method in METHODS:
            res = results[method]
            row = [method, _fmt([r["acc"] for r in res])]
            for split in ("near", "far"):
                for metric in ("auroc", "fpr95"):
                    row.append(_fmt([r[(score_name, split, metric)] for r in res]))
            rows.append(row)
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(6)]
        label = "Energy" if score_name == "energy" else "MSP"
        print(f"\n{label} score (%, mean +- std over {n_seeds} seed(s))")
        line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
        print(line)
        print("-" * len(line))
        for row in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def verdict(results, acc_tolerance=1.0):
    """Footer lines: did each fine-tuning lower FPR95 at similar ID accuracy?"""
    base = results["CE (base)"]

    def mean(res, key):
        return float(np.mean([r[key] for r in res]))

    lines, wins = [], []
    per_set = {
        (score_name, split): [] for score_name, _ in SCORES for split in ("near", "far")
    }
    for method in METHODS[1:]:
        res = results[method]
        d_acc = mean(res, "acc") - mean(base, "acc")
        parts, lowered = [], []
        for score_name, _ in SCORES:
            for split in ("near", "far"):
                key = (score_name, split, "fpr95")
                d = mean(res, key) - mean(base, key)
                parts.append(f"{score_name}/{split} {d:+.1f}")
                lowered.append(d < 0)
                if d < 0 and d_acc >= -acc_tolerance:
                    per_set[(score_name, split)].append(method)
        similar = d_acc >= -acc_tolerance
        ok = similar and all(lowered)
        if ok:
            wins.append(method)
        answer = (
            "yes"
            if ok
            else (
                "partly"
                if similar and any(lowered)
                else ("no (ID accuracy dropped)" if not similar else "no")
            )
        )
        lines.append(
            f"  {method:<10} ID acc {d_acc:+.1f} pt; FPR95 change (pt) "
            + ", ".join(parts)
            + f" -> {answer}"
        )
    summary = [
        f"Lower mean FPR95 at similar ID accuracy (mean within {acc_tolerance:g} "
        "pt of the base or above), per score and OOD set:"
    ]
    for (score_name, split), methods in per_set.items():
        summary.append(
            f"  {score_name}/{split}: " + (", ".join(methods) if methods else "none")
        )
    summary.append(
        "On every score and OOD set: "
        + (", ".join(wins) if wins else "none of the fine-tunings")
        + ". Differences smaller than the std over seeds are noise."
    )
    return lines, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("digits", "fashion"), default="digits")
    parser.add_argument("--seeds", type=int, default=3, help="seeds (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="overhead pairs (default 7 for digits, 3 for fashion, 2 with --quick)",
    )
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--fashion-dir", default=FASHION_DIR)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="skorch")

    fashion = None
    if args.dataset == "fashion":
        fashion = load_fashion(args.fashion_dir)
        if fashion is None:
            print(
                f"SKIPPED: Fashion-MNIST idx files not found under {args.fashion_dir} "
                "(install the Debian package: apt-get install -y "
                "dataset-fashion-mnist, or pass --fashion-dir).",
            )
            return 0
    cfg = dict(CONFIGS[args.dataset])
    if args.quick:
        cfg.update(QUICK)
    n_seeds = 1 if args.quick else args.seeds

    t_start = time.perf_counter()
    results = {m: [] for m in METHODS}
    info = []
    data = None
    for seed in range(n_seeds):
        t0 = time.perf_counter()
        data = make_split(args.dataset, seed, args.quick, fashion)
        modules, extra = train_all(data, cfg, seed)
        for method in METHODS:
            results[method].append(evaluate(modules[method], data))
            if method in extra["paired"]:
                results[method][-1].update(
                    evaluate_paired(modules[method], extra["paired"][method], data)
                )
        info.append(extra)
        print(
            f"seed {seed}: {time.perf_counter() - t0:.1f} s, margins "
            f"({extra['margin_in']:.2f}, {extra['margin_out']:.2f}), "
            f"UM level {extra['level']:.4f}",
            file=sys.stderr,
        )

    print(
        f"bench_training: {args.dataset}{' (quick)' if args.quick else ''}, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s)"
    )
    print(
        f"ID train {len(data['X_train'])} rows, ID test {len(data['X_test'])}, "
        f"near OOD {len(data['near'])} (held-out classes), far OOD "
        f"{len(data['far'])} ({data['far_name']}), auxiliary outliers "
        f"{len(data['aux'])} (pixel-permuted ID images + blurred 2-class mixtures)"
    )
    print(
        f"base: {cfg['base']}; fine-tuning: finetune_preset('energy_oe') with "
        f"{cfg['finetune']}; UMAP: {cfg['umap']}, keep 0.8"
    )
    print(
        "energy margins (mean base energies, ID / aux): "
        + ", ".join(f"({e['margin_in']:.2f}, {e['margin_out']:.2f})" for e in info)
        + "; UM levels (keep 0.965): "
        + ", ".join(f"{e['level']:.4f}" for e in info)
    )
    print_tables(results, n_seeds)
    print_paired_table(results, n_seeds)
    lines, summary = verdict(results)
    print("\nDid the fine-tunings lower FPR95 at similar ID accuracy (vs CE base)?")
    for line in [*lines, *summary]:
        print(line)

    if not args.no_overhead:
        repeats = args.repeats
        if repeats is None:
            repeats = 2 if args.quick else (7 if args.dataset == "digits" else 3)
        over = measure_overhead(data, cfg, 0, max(1, repeats))
        print(
            f"\nTraining overhead, one OE epoch ({over['batches']} batches of "
            f"{over['batch_rows']}): OODNeuralNetClassifier.partial_fit "
            f"{1000 * over['ours']:.1f} ms, bare torch loop "
            f"{1000 * over['bare']:.1f} ms (best of each); median ratio "
            f"ours / bare = {over['ratio']:.3f} (aim <= 1.10: "
            f"{'met' if over['ratio'] <= 1.10 else 'NOT met'})"
        )
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
