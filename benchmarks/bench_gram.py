"""Gram detector: ours against pytorch-ood 0.4.0's on a real 28x28 CNN.

A :class:`~sklearn_ood.torch.FashionCNN` (three convolution blocks,
``block1`` 16 x 14 x 14, ``block2`` 32 x 7 x 7, ``block3`` 64 x 7 x 7) is
trained for a few epochs on CPU, then both detectors are fitted on the same
ID images and score the same test images, in this process, on the CPU:

* ``--dataset digits`` (default, nothing to download): scikit-learn's 8x8
  digits, bilinearly upscaled to 28x28 and padded by 2 pixels; the fit set is
  the training digits repeated with random shifts of up to 2 pixels (to
  reach ``--n-fit`` images), the ID test set the held-out digits shifted
  likewise.
* ``--dataset fashion``: Fashion-MNIST from the Debian package's idx files
  (:func:`sklearn_ood.datasets.load_fashion_mnist`; nothing downloads):
  ``--n-fit`` training images (the model trains on them too) and ID test
  images from the test split.

The OOD test images are uniform and Gaussian noise
(:func:`sklearn_ood.datasets.make_noise_images`), half the score set.

Both detectors use the same layers and powers. pytorch-ood's ``Gram``
applies its ``feature_layers`` one after the other and its ``head`` to the
last output, so the model is cut at the chosen blocks: each feature layer is
the chain of blocks since the previous chosen one, and the head is the rest
of the model (the later blocks, pooling, dropout, ``fc``). Theirs fits
per true label and holds out 10 % for its normalisation; ours bounds per
predicted class with leave-one-out normalisation (see ``Gram``'s
docstring), so the scores agree in rank closely but not exactly: ``rho`` is
Spearman's correlation of ours with minus theirs (pytorch-ood returns
outlier scores). Ours also sets ``offset_`` (its threshold) in ``fit``.

Timing: ``--repeats`` fresh fits and scorings of each detector, alternating
which goes first; the table shows the best and the median. ``ratio`` is the
median over the repeats of ours / theirs (below 1: ours faster).

    python benchmarks/bench_gram.py --threads 1          # 10,000 fit, 5,000 scored
    python benchmarks/bench_gram.py --quick               # smoke run
    python benchmarks/bench_gram.py --threads 1 --profile # + cProfile of ours
"""

import sys

import _bench_env

_bench_env.configure(sys.argv)

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _bench_utils import compare_scores, fmt_seconds, fmt_table  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from sklearn_ood.datasets import load_fashion_mnist, make_noise_images  # noqa: E402
from sklearn_ood.metrics import auroc  # noqa: E402
from sklearn_ood.torch import FashionCNN, Gram  # noqa: E402

BLOCKS = ("block1", "block2", "block3")


# --------------------------------------------------------------------- data
def _shifted(images, n, rng):
    """``n`` images drawn from ``images``, each shifted by up to 2 pixels."""
    idx = rng.integers(0, len(images), n)
    shifts = rng.integers(-2, 3, size=(n, 2))
    out = np.empty((n, *images.shape[1:]), dtype=np.float32)
    for k, (i, (dy, dx)) in enumerate(zip(idx, shifts)):
        out[k] = np.roll(images[i], (dy, dx), axis=(-2, -1))
    return out, idx


def load_data(dataset, n_fit, n_score, rng):
    """``(X_train, y_train, X_fit, y_fit, X_score, is_id)``, images (n, 1, 28, 28)."""
    if dataset == "fashion":
        data = load_fashion_mnist()
        X_all = (data.data[:, None] / 255.0).astype(np.float32)
        X_te = (data.data_test[:, None] / 255.0).astype(np.float32)
        pick = rng.choice(len(X_all), min(n_fit, len(X_all)), replace=False)
        X_fit, y_fit = X_all[pick], data.target[pick]
        X_tr, y_tr = X_fit, y_fit  # the model trains on the fit images
        pick = rng.choice(len(X_te), min(n_score // 2, len(X_te)), replace=False)
        X_id = X_te[pick]
    else:
        digits = load_digits()
        small = digits.images / 16.0
        # Bilinear (order=1) never overshoots [0, 1]; 24x24 + 2 pixels of border.
        big = np.clip(ndimage.zoom(small, (1, 3, 3), order=1), 0, 1)
        images = np.pad(big, ((0, 0), (2, 2), (2, 2)))[:, None].astype(np.float32)
        order = rng.permutation(len(images))
        train, test = order[:1400], order[1400:]
        X_tr, y_tr = images[train], digits.target[train]
        X_fit, idx = _shifted(X_tr, n_fit, rng)
        y_fit = y_tr[idx]
        X_id, _ = _shifted(images[test], n_score // 2, rng)
    n_ood = n_score - len(X_id)
    X_ood = np.concatenate(
        [
            make_noise_images(kind, n, (1, 28, 28), random_state=seed)
            for kind, n, seed in (
                ("uniform", n_ood // 2, 1),
                ("gaussian", n_ood - n_ood // 2, 2),
            )
        ]
    ).astype(np.float32)
    X_score = np.concatenate([X_id, X_ood])
    is_id = np.r_[np.ones(len(X_id), bool), np.zeros(len(X_ood), bool)]
    return X_tr, y_tr, X_fit, y_fit, X_score, is_id


def train_model(X, y, epochs, seed):
    """FashionCNN trained with Adam on (X, y), shifted anew each epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FashionCNN(n_classes=10, width=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        Xe, idx = _shifted(X, len(X), rng)
        xs, ys = torch.from_numpy(Xe), torch.from_numpy(y[idx]).long()
        for start in range(0, len(xs), 64):
            opt.zero_grad()
            loss = loss_fn(model(xs[start : start + 64]), ys[start : start + 64])
            loss.backward()
            opt.step()
    return model.eval()


# ---------------------------------------------------------------- detectors
def cut_model(model, layers):
    """pytorch-ood's ``(feature_layers, head)`` giving ``layers``' outputs."""
    feature_layers, chain = [], []
    for block in BLOCKS:
        chain.append(getattr(model, block))
        if block in layers:
            feature_layers.append(nn.Sequential(*chain))
            chain = []
    head = nn.Sequential(*chain, model.pool, model.dropout, model.fc)
    return feature_layers, head


def run_ours(model, layers, powers, batch_size, X_fit, X_score, profile=None):
    det = Gram(model, layers, powers=powers, batch_size=batch_size, device="cpu")
    if profile is not None:
        profile.enable()
    t0 = time.perf_counter()
    det.fit(X_fit)  # predicted classes: no labels needed
    t1 = time.perf_counter()
    scores = det.score_samples(X_score)
    t2 = time.perf_counter()
    if profile is not None:
        profile.disable()
    return t1 - t0, t2 - t1, scores


def run_theirs(model, layers, powers, batch_size, X_fit, y_fit, X_score):
    from pytorch_ood.detector import Gram as TheirGram

    feature_layers, head = cut_model(model, layers)
    det = TheirGram(head, feature_layers, 10, num_poles_list=list(powers))
    loader = DataLoader(
        TensorDataset(torch.from_numpy(X_fit), torch.from_numpy(y_fit).long()),
        batch_size=batch_size,
    )
    t0 = time.perf_counter()
    det.fit(loader)
    t1 = time.perf_counter()
    with torch.no_grad():
        scores = torch.cat(
            [
                det.predict(torch.from_numpy(X_score[s : s + batch_size]))
                for s in range(0, len(X_score), batch_size)
            ]
        )
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, scores.double().numpy()


# -------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "fashion"), default="digits")
    parser.add_argument("--quick", action="store_true", help="10x fewer images")
    parser.add_argument("--n-fit", type=int, default=10_000)
    parser.add_argument("--n-score", type=int, default=5_000)
    parser.add_argument("--layers", default="block1,block2,block3")
    parser.add_argument("--powers", type=int, default=10, help="powers 1..P")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch/BLAS threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="cProfile of ours")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    layers = args.layers.split(",")
    if any(layer not in BLOCKS for layer in layers):
        parser.error(f"--layers must be among {BLOCKS}")
    layers = [b for b in BLOCKS if b in layers]  # model order, as theirs needs
    powers = list(range(1, args.powers + 1))
    n_fit, n_score = args.n_fit, args.n_score
    if args.quick:
        n_fit, n_score, args.epochs = n_fit // 10, n_score // 10, 1

    rng = np.random.default_rng(args.seed)
    X_tr, y_tr, X_fit, y_fit, X_score, is_id = load_data(
        args.dataset, n_fit, n_score, rng
    )
    t0 = time.perf_counter()
    model = train_model(X_tr, y_tr, args.epochs, args.seed)
    print(
        f"# trained FashionCNN on {len(X_tr)} {args.dataset} images, "
        f"{args.epochs} epochs, {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    common = (model, layers, powers, args.batch_size)
    # Warm-up (allocator, oneDNN kernels, imports) on a few images.
    run_ours(*common, X_fit[:256], X_score[:64])
    run_theirs(*common, X_fit[:256], y_fit[:256], X_score[:64])

    times = {"ours": [], "theirs": []}
    scores = {}
    for rep in range(args.repeats):
        order = ("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours")
        for who in order:
            if who == "ours":
                fit_s, score_s, s = run_ours(*common, X_fit, X_score)
            else:
                # pytorch-ood draws its held-out split from the global RNG.
                torch.manual_seed(args.seed)
                fit_s, score_s, s = run_theirs(*common, X_fit, y_fit, X_score)
            times[who].append((fit_s, score_s))
            scores[who] = s
            print(
                f"# repeat {rep}: {who} fit {fit_s:.2f} s, score {score_s:.2f} s",
                file=sys.stderr,
            )

    ours_t, theirs_t = np.array(times["ours"]), np.array(times["theirs"])
    ratio = np.median(ours_t / theirs_t, axis=0)
    _, _, rho, _ = compare_scores(scores["ours"], -scores["theirs"])
    rows = []
    for who, t in (("ours", ours_t), ("theirs", theirs_t)):
        sign = 1 if who == "ours" else -1
        rows.append(
            [
                who,
                fmt_seconds(t[:, 0].min()),
                fmt_seconds(float(np.median(t[:, 0]))),
                fmt_seconds(t[:, 1].min()),
                fmt_seconds(float(np.median(t[:, 1]))),
                f"{ratio[0]:.2f}" if who == "ours" else "",
                f"{ratio[1]:.2f}" if who == "ours" else "",
                f"{rho:.4f}" if who == "ours" else "",
                f"{auroc(np.where(is_id, 0, -1), sign * scores[who]):.4f}",
            ]
        )
    print(
        f"Gram, {args.dataset} 28x28, FashionCNN width 16, layers {'+'.join(layers)}, "
        f"powers 1..{args.powers}, fit {len(X_fit)}, score {len(X_score)} "
        f"({int(is_id.sum())} ID + {int((~is_id).sum())} noise), batch "
        f"{args.batch_size}, {args.threads} thread(s), {args.repeats} repeats, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    header = ["detector", "fit min s", "fit med s", "score min s", "score med s"]
    header += ["fit ratio", "score ratio", "rho", "AUROC ID/noise"]
    print(fmt_table(header, rows))

    if args.profile:
        prof = cProfile.Profile()
        run_ours(*common, X_fit, X_score, profile=prof)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())


if __name__ == "__main__":
    main()
