"""Speed and memory of sklearn-ood's detectors against pytorch-ood 0.4.0.

Each of our detectors and its pytorch-ood counterpart fit and score the SAME
synthetic features (or the logits of a random linear head on them), with the
same number of threads, and the table compares:

* fit and score wall time: ours from float32 NumPy in to NumPy out
  (``fit(X, y)``, ``score_samples(X_test)``), theirs from float32 tensors in
  to a tensor out (``fit_features`` / ``predict_features``, ``fit_logits`` /
  ``predict_logits``, ...; predictions under ``torch.no_grad()``). Our fit
  includes setting ``offset_`` (the contamination threshold, which
  pytorch-ood does not have); ``--no-threshold`` fits ours with
  ``contamination=None`` instead (scores only, as pytorch-ood);
* peak memory: the rise of the process's resident set (RSS) during fit +
  score, from the kernel's high-water mark (``VmHWM``, reset before each fit
  through ``/proc/self/clear_refs``), so torch, BLAS and faiss allocations
  count too (tracemalloc would miss them);
* speed-up = (their fit + score) / (our fit + score);
* agreement: their outlier scores are turned into ours ("higher = more
  in-distribution") by each pair's documented transform (negation, and the
  scale factors of ``Pair.align``, printed under the tables and listed in
  README.md) and compared: max |diff|,
  that divided by the range of our scores, Spearman's rho, and whether the
  rankings are identical.

Cases (``--quick`` shrinks each about tenfold):

a. 50,000 x 512 features, 100 classes, 10,000 test rows: every pair.
b. 1,000 classes x 1,024 dims, 20,000 fit rows, 5,000 test rows:
   Mahalanobis, RMD, GMM, KLMatching, ViM.
c. KNN bank of 1,000,000 x 256 float32, 10,000 queries, k=50: ours with the
   NumPy and faiss algorithms against theirs (scikit-learn brute force).
d. 200,000 x 256 float32 fit rows, 100 classes, 2,000 queries: the Gaussian
   family where the fit dominates (Mahalanobis, RMD, GMM, MultiMahalanobis).

Case a runs in this process (pairs marked heavy run their pytorch-ood side in
an isolated worker, except with ``--quick``). Cases b, c and d run every
detector, ours and theirs, in worker subprocesses with a memory cap
(``--mem-limit``: RLIMIT_AS plus an RSS watchdog) and a time limit
(``--timeout``), so that an out-of-memory or a runaway shows up as
"failed: ..." in the table instead of killing the benchmark.

    python benchmarks/bench_detectors.py --quick                  # smoke run
    python benchmarks/bench_detectors.py --quick --cases a --only Energy,KNN
    python benchmarks/bench_detectors.py --cases a                # full case a
    python benchmarks/bench_detectors.py --cases b,c --timeout 900
    python benchmarks/bench_detectors.py --cases a --no-threshold  # scores only
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import _bench_env  # noqa: E402

# Thread counts must be in the environment before NumPy / torch load.
_bench_env.configure(sys.argv)

import argparse  # noqa: E402
import cProfile  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import _bench_utils as bu  # noqa: E402
import numpy as np  # noqa: E402

# ------------------------------------------------------------------- cases
CASES = {
    "a": dict(n_train=50_000, n_features=512, n_classes=100, n_test=10_000),
    "b": dict(n_train=20_000, n_features=1024, n_classes=1000, n_test=5_000),
    "c": dict(n_train=1_000_000, n_features=256, n_classes=100, n_test=10_000),
    "d": dict(n_train=200_000, n_features=256, n_classes=100, n_test=2_000),
}
QUICK_CASES = {
    "a": dict(n_train=5_000, n_features=256, n_classes=50, n_test=1_000),
    "b": dict(n_train=2_000, n_features=512, n_classes=100, n_test=500),
    "c": dict(n_train=50_000, n_features=256, n_classes=100, n_test=1_000),
    "d": dict(n_train=20_000, n_features=256, n_classes=100, n_test=200),
}
CASE_TITLES = {
    "a": "a: {n_train:,} x {n_features} features, {n_classes} classes, "
    "{n_test:,} test rows (in one process)",
    "b": "b: {n_classes:,} classes x {n_features:,} dims, {n_train:,} fit rows, "
    "{n_test:,} test rows (each run in a capped worker)",
    "c": "c: KNN bank {n_train:,} x {n_features} float32, {n_test:,} queries, k=50 "
    "(each run in a capped worker)",
    "d": "d: {n_train:,} x {n_features} float32 fit rows, {n_classes} classes, "
    "{n_test:,} queries: Gaussian fits (each run in a capped worker)",
}
# Their MultiMahalanobis forms a B x B matrix per class (the diagonal of
# z P z^T), so it is fed batches as a DataLoader would; see README.
THEIR_STRUCTURED_BATCH = 512


# -------------------------------------------------------------------- data
def _sample(rng, means, labels, noise):
    """ReLU(means[labels] + noise * N(0, 1)) in float32, generated in chunks."""
    out = np.empty((len(labels), means.shape[1]), dtype=np.float32)
    for start in range(0, len(labels), 65536):
        stop = min(start + 65536, len(labels))
        block = rng.standard_normal((stop - start, means.shape[1]), dtype=np.float32)
        block *= noise
        block += means[labels[start:stop]]
        np.maximum(block, 0.0, out=block)
        out[start:stop] = block
    return out


def make_data(sizes, seed, head=True):
    """Class-conditional Gaussians with random means, after a ReLU.

    Test rows: half in-distribution (fresh draws of the fit classes), half
    OOD (20 other random means, more noise). 5 % of the fit labels are
    replaced by random ones (label noise, so that the fit rows are not all
    classified correctly, as for a real network; TemperatureScaling needs
    it). With ``head``: a random full-rank linear head ``W, b``, the centred
    class means plus noise, scaled so that the median top-1 / top-2 logit
    margin is 6 and the median top logit about 10, and its logits.
    """
    n, d, C, m = (sizes[k] for k in ("n_train", "n_features", "n_classes", "n_test"))
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d), dtype=np.float32)
    data = {}
    y = rng.permutation(np.arange(n) % C).astype(np.int64)
    data["X_train"] = _sample(rng, means, y, 1.0)
    flip = rng.random(n) < 0.05
    y[flip] = rng.integers(C, size=int(flip.sum()))
    if np.unique(y).size < C:  # every class keeps at least one row
        y[:C] = np.arange(C)
    data["y_train"] = y
    n_id = m // 2
    ood_means = 1.2 * rng.standard_normal((20, d), dtype=np.float32)
    data["X_test"] = np.vstack(
        [
            _sample(rng, means, rng.integers(C, size=n_id), 1.0),
            _sample(rng, ood_means, rng.integers(20, size=m - n_id), 1.3),
        ]
    )
    if head:
        centred = means - means.mean(axis=0)
        W = centred / np.linalg.norm(centred, axis=1, keepdims=True)
        # Centred means sum to zero (rank C - 1); noise makes the head full rank.
        W += 0.3 * rng.standard_normal(W.shape, dtype=np.float32) / np.sqrt(d)
        logits = data["X_train"][:2000] @ W.T
        top2 = np.sort(logits, axis=1)[:, -2:]
        W *= 6.0 / np.median(top2[:, 1] - top2[:, 0])
        b = rng.normal(0.0, 0.1, C).astype(np.float32)
        # Shift the biases so that the median top logit is about 10 (their
        # WeightedEBO exponentiates logits without subtracting the max).
        top = np.median((data["X_train"][:2000] @ W.T + b).max(axis=1))
        b -= np.float32(top - 10.0)
        data["W"], data["b"] = W.astype(np.float32), b.astype(np.float32)
        data["L_train"] = data["X_train"] @ data["W"].T + data["b"]
        data["L_test"] = data["X_test"] @ data["W"].T + data["b"]
        data["energy_weights"] = rng.uniform(0.5, 1.5, C).astype(np.float32)
    return data


class Ctx:
    """The data of a case, as NumPy arrays (ours) and tensors (theirs)."""

    def __init__(self, data, sizes):
        self.np = data
        self.sizes = sizes
        self.n_train = sizes["n_train"]
        self.n_classes = sizes["n_classes"]
        self.n_features = sizes["n_features"]
        self._torch = {}

    def subset(self, per_class=10, n_test=200):
        """A small slice of the data (``per_class`` fit rows of each label)."""
        y = self.np["y_train"]
        order = np.argsort(y, kind="stable")
        starts = np.searchsorted(y[order], np.arange(self.n_classes))
        rank = np.arange(len(y)) - np.repeat(
            starts, np.bincount(y, minlength=self.n_classes)
        )
        rows = np.sort(order[rank < per_class])
        data = dict(self.np)
        for key in ("X_train", "L_train", "y_train"):
            if key in data:
                data[key] = np.ascontiguousarray(data[key][rows])
        for key in ("X_test", "L_test"):
            if key in data:
                data[key] = np.ascontiguousarray(data[key][:n_test])
        sizes = dict(
            self.sizes, n_train=len(rows), n_test=min(n_test, self.sizes["n_test"])
        )
        return Ctx(data, sizes)

    @property
    def head(self):
        return (self.np["W"].astype(np.float64), self.np["b"].astype(np.float64))

    def t(self, name):
        import torch

        if name not in self._torch:
            self._torch[name] = torch.from_numpy(self.np[name])
        return self._torch[name]

    def linear(self):
        import torch

        lin = torch.nn.Linear(self.n_features, self.n_classes)
        with torch.no_grad():
            lin.weight.copy_(self.t("W"))
            lin.bias.copy_(self.t("b"))
        return lin.requires_grad_(False)

    def flat_head(self):
        """Their ASH / SCALE take B x C x 1 x 1 maps: flatten, then the head."""
        lin = self.linear()
        return lambda maps: lin(maps.flatten(1))


# ------------------------------------------------------------------- pairs
@dataclass
class Pair:
    """One of our detectors and its pytorch-ood counterpart.

    ``inputs``: what both consume ("logits", "features"), and how theirs is
    called: "logits" -> fit_logits/predict_logits, "features" ->
    fit_features/predict_features, "maps2d" / "maps4d" ->
    fit_feature_maps/predict_feature_maps on B x D or B x D x 1 x 1,
    "groups" -> fit_structured/predict_structured on two column halves.
    ``align(theirs_scores, ctx)`` maps their outlier score onto ours.
    """

    name: str
    ours: str
    inputs: str
    make_ours: Callable
    make_theirs: Callable
    align: Callable
    align_doc: str
    ours_uses_y: bool = True
    theirs_correct_only: bool = False
    heavy: bool = False
    ours_info: Callable | None = None
    theirs_info: Callable | None = None
    note: str = ""
    cases: tuple = ("a",)


def _neg(s, c):
    return -s


def _pairs():
    P = []

    def add(*args, **kwargs):
        P.append(Pair(*args, **kwargs))

    # ---- logits
    add(
        "MaxSoftmax",
        "MaxSoftmax",
        "logits",
        lambda c, o: o.MaxSoftmax(),
        lambda c, t: t.MaxSoftmax(None),
        _neg,
        "-theirs",
    )
    add(
        "MaxLogit",
        "MaxLogit",
        "logits",
        lambda c, o: o.MaxLogit(),
        lambda c, t: t.MaxLogit(None),
        _neg,
        "-theirs",
    )
    add(
        "Energy",
        "Energy",
        "logits",
        lambda c, o: o.Energy(),
        lambda c, t: t.EnergyBased(None),
        _neg,
        "-theirs",
    )
    add(
        "Entropy",
        "Entropy",
        "logits",
        lambda c, o: o.Entropy(),
        lambda c, t: t.Entropy(None),
        _neg,
        "-theirs (they clip p to [1e-7, 1])",
    )
    add(
        "GEN",
        "GEN",
        "logits",
        lambda c, o: o.GEN(gamma=0.1),
        lambda c, t: t.GEN(None, gamma=0.1, M=None),
        lambda s, c: -c.n_classes * s,
        "-C x theirs (they average over the C classes, we sum; they clamp p)",
    )
    add(
        "WeightedEnergy",
        "WeightedEnergy",
        "logits",
        lambda c, o: o.WeightedEnergy(weights=c.np["energy_weights"].astype(float)),
        lambda c, t: t.WeightedEBO(None, weights=c.t("energy_weights")),
        _neg,
        "-theirs (weights uniform in [0.5, 1.5])",
    )
    add(
        "TemperatureScaling",
        "TemperatureScaling",
        "logits",
        lambda c, o: o.TemperatureScaling(),
        lambda c, t: t.TemperatureScaling(None),
        _neg,
        "-theirs; T differs (theirs: 50 L-BFGS steps from T=1)",
        ours_info=lambda d: f"T={d.temperature_:.4g}",
        theirs_info=lambda d: f"T={d.t.detach().item():.4g}",
    )
    add(
        "KLMatching",
        "KLMatching",
        "logits",
        lambda c, o: o.KLMatching(),
        lambda c, t: t.KLMatching(None),
        _neg,
        "-theirs (ours fit without y: templates of the predicted classes, as theirs)",
        ours_uses_y=False,
        cases=("a", "b"),
    )
    add(
        "OpenMax",
        "OpenMax",
        "logits",
        lambda c, o: o.OpenMax(tailsize=25, n_revised_classes=10, distance="euclidean"),
        lambda c, t: t.OpenMax(None, tailsize=25, alpha=10, euclid_weight=1.0),
        lambda s, c: 1.0 - s,
        "1 - theirs (their P0 vs our 1 - P0); theirs is fitted on the correctly "
        "classified rows only, as ours selects them itself; the Weibull fits "
        "still differ (theirs: libMR shift), so compare the rankings",
        theirs_correct_only=True,
    )
    # ---- class-conditional Gaussians
    add(
        "Mahalanobis",
        "Mahalanobis",
        "features",
        lambda c, o: o.Mahalanobis(),
        lambda c, t: t.Mahalanobis(None),
        lambda s, c: -2.0 * c.n_train * s,
        "-2N x theirs (they invert the undivided scatter + 1e-6 I, halve)",
        cases=("a", "b", "d"),
    )
    add(
        "RMD",
        "RMD",
        "features",
        lambda c, o: o.RMD(),
        lambda c, t: t.RMD(None),
        lambda s, c: -1.0 * c.n_train * s,
        "-N x theirs (undivided scatters + 1e-6 I)",
        cases=("a", "b", "d"),
    )
    add(
        "GMM",
        "GMM",
        "features",
        lambda c, o: o.GMM(reg_covar=1e-6),
        lambda c, t: t.GMM(None, reg=1e-6),
        _neg,
        "-theirs (reg_covar=1e-6, their reg=1e-6; theirs computes in float64)",
        heavy=True,
        cases=("a", "b", "d"),
    )
    add(
        "MultiMahalanobis",
        "MultiMahalanobis",
        "groups",
        lambda c, o: o.MultiMahalanobis(groups=[c.n_features // 2] * 2),
        lambda c, t: t.MultiMahalanobis(_identities(2)),
        lambda s, c: -2.0 * c.n_train * s,
        "-2N x theirs (layer weights 1, 1; their predict fed "
        f"{THEIR_STRUCTURED_BATCH}-row batches: it builds a B x B matrix per class)",
        cases=("a", "d"),
    )
    # ---- neighbours
    add(
        "KNN",
        "KNN",
        "features",
        lambda c, o: o.KNN(n_neighbors=50),
        lambda c, t: t.KNN(None, k=50),
        _neg,
        "-theirs (ours: algorithm auto; theirs: sklearn brute force, n_jobs=-1)",
        ours_info=lambda d: f"algorithm={d.algorithm_}",
    )
    add(
        "KNN[numpy]",
        "KNN",
        "features",
        lambda c, o: o.KNN(n_neighbors=50, algorithm="numpy"),
        lambda c, t: t.KNN(None, k=50),
        _neg,
        "-theirs",
        cases=("a", "c"),
    )
    add(
        "KNN[faiss]",
        "KNN",
        "features",
        lambda c, o: o.KNN(n_neighbors=50, algorithm="faiss"),
        lambda c, t: t.KNN(None, k=50),
        _neg,
        "-theirs",
        cases=("c",),
    )
    add(
        "NNGuide",
        "NNGuide",
        "features",
        lambda c, o: o.NNGuide(c.head, n_neighbors=10),
        lambda c, t: t.NNGuide(None, head=c.linear(), k=10),
        _neg,
        "-theirs",
        ours_info=lambda d: f"algorithm={d.algorithm_}",
    )
    # ---- subspace / head-aware / shaping
    add(
        "ViM",
        "ViM",
        "features",
        lambda c, o: o.ViM(c.head, n_components=c.n_features // 2),
        lambda c, t: t.ViM(None, d=c.n_features // 2, w=c.t("W"), b=c.t("b")),
        _neg,
        "-theirs (n_components = their d = d/2; theirs float32)",
        cases=("a", "b"),
    )
    add(
        "SHE",
        "SHE",
        "features",
        lambda c, o: o.SHE(c.head),
        lambda c, t: t.SHE(None, head=c.linear()),
        _neg,
        "-theirs",
    )
    add(
        "fDBD",
        "fDBD",
        "features",
        lambda c, o: o.fDBD(c.head),
        lambda c, t: t.fDBD(None, c.linear()),
        _neg,
        "-theirs",
    )
    add(
        "NCI",
        "NCI",
        "features",
        lambda c, o: o.NCI(c.head, norm_weight=1e-4),
        lambda c, t: t.NCI(None, c.linear(), alpha=1e-4),
        _neg,
        "-theirs (our norm_weight = their alpha = 1e-4)",
    )
    add(
        "DICE",
        "DICE",
        "features",
        lambda c, o: o.DICE(c.head, percentile=70),
        lambda c, t: t.DICE(None, w=c.t("W"), b=c.t("b"), p=0.7),
        _neg,
        "-theirs (percentile=70 vs their p=0.7; they keep contributions > q, we >= q)",
    )
    add(
        "ReAct",
        "ReAct",
        "maps2d",
        lambda c, o: o.ReAct(c.head, percentile=90),
        lambda c, t: t.ReAct(None, head=c.linear(), percentile=0.9),
        _neg,
        "-theirs (90th percentile; their fraction 0.9)",
    )
    add(
        "ASH",
        "ASH",
        "maps4d",
        lambda c, o: o.ASH(c.head, variant="s", percentile=65),
        lambda c, t: t.ASH(None, head=c.flat_head(), variant="ash-s", percentile=0.65),
        _neg,
        "-theirs (ASH-S, 65 %; theirs on B x D x 1 x 1)",
    )
    add(
        "SCALE",
        "SCALE",
        "maps4d",
        lambda c, o: o.SCALE(c.head, percentile=85),
        lambda c, t: t.SCALE(None, head=c.flat_head(), percentile=0.85),
        _neg,
        "-theirs (85 %; theirs on B x D x 1 x 1)",
    )
    return P


def _identities(n):
    import torch

    return [torch.nn.Identity() for _ in range(n)]


PAIRS = {p.name: p for p in _pairs()}


def pairs_for(case, only):
    selected = [p for p in PAIRS.values() if case in p.cases]
    if only:
        wanted = {w.strip().lower() for w in only.split(",") if w.strip()}
        selected = [
            p
            for p in selected
            if p.name.lower() in wanted or p.name.split("[")[0].lower() in wanted
        ]
    return selected


# ----------------------------------------------------------------- running
def our_detector_class(pair):
    """Our class from the public ``sklearn_ood.detectors`` namespace, or None."""
    import sklearn_ood.detectors as ours

    return getattr(ours, pair.ours, None)


class _Namespace:
    pass


def _ours_module(pair):
    ns = _Namespace()
    setattr(ns, pair.ours, our_detector_class(pair))
    return ns


def _run_ours_once(pair, ctx, profile=False, no_threshold=False):
    """Fit and score ours; returns a result dict (times, peak, scores).

    ``fit`` sets ``offset_`` (scoring up to 10,000 fit rows, leave-one-out
    for KNN and NNGuide), unless ``no_threshold`` fits with
    ``contamination=None``.
    """
    logits = pair.inputs == "logits"
    X_fit = ctx.np["L_train" if logits else "X_train"]
    X_test = ctx.np["L_test" if logits else "X_test"]
    y = ctx.np["y_train"] if pair.ours_uses_y else None
    det = pair.make_ours(ctx, _ours_module(pair))
    if no_threshold:
        det.set_params(contamination=None)
    res = {}
    prof = cProfile.Profile() if profile else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with bu.PeakRSS() as mem:
            if prof:
                prof.enable()
            t0 = time.perf_counter()
            det.fit(X_fit, y)
            t1 = time.perf_counter()
            scores = det.score_samples(X_test)
            t2 = time.perf_counter()
            if prof:
                prof.disable()
    res.update(fit_s=t1 - t0, score_s=t2 - t1, peak=mem.peak)
    res["scores"] = np.asarray(scores, dtype=np.float64)
    if pair.ours_info:
        res["info"] = pair.ours_info(det)
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
        res["profile"] = out.getvalue()
    del det
    return res


def _their_call(pair, det, ctx, stage):
    import torch

    y = ctx.t("y_train")
    if pair.inputs == "logits":
        if stage == "fit" and pair.theirs_correct_only:
            return det.fit_logits(ctx.t("L_train_correct"), ctx.t("y_train_correct"))
        if stage == "fit":
            return det.fit_logits(ctx.t("L_train"), y)
        return det.predict_logits(ctx.t("L_test"))
    if pair.inputs == "features":
        if stage == "fit":
            return det.fit_features(ctx.t("X_train"), y)
        return det.predict_features(ctx.t("X_test"))
    if pair.inputs in ("maps2d", "maps4d"):
        name = "X_train" if stage == "fit" else "X_test"
        X = ctx.t(name)
        if pair.inputs == "maps4d":
            X = X.view(X.shape[0], X.shape[1], 1, 1)
        if stage == "fit":
            return det.fit_feature_maps(X, y)
        return det.predict_feature_maps(X)
    if pair.inputs == "groups":
        half = ctx.n_features // 2
        key = "X_train" if stage == "fit" else "X_test"
        if key + "_groups" not in ctx._torch:
            X = ctx.np[key]
            ctx._torch[key + "_groups"] = [
                torch.from_numpy(np.ascontiguousarray(X[:, :half])),
                torch.from_numpy(np.ascontiguousarray(X[:, half:])),
            ]
        groups = ctx._torch[key + "_groups"]
        if stage == "fit":
            return det.fit_structured(groups, y)
        step = THEIR_STRUCTURED_BATCH
        return torch.cat(
            [
                det.predict_structured([g[i : i + step] for g in groups])
                for i in range(0, groups[0].shape[0], step)
            ]
        )
    raise ValueError(pair.inputs)


def prepare_theirs_inputs(pair, ctx):
    """Build the tensors (and column halves) before any timing starts."""
    for name in ("y_train", "L_train", "L_test", "X_train", "X_test"):
        if name in ctx.np:
            ctx.t(name)
    if pair.theirs_correct_only and "L_train_correct" not in ctx.np:
        correct = ctx.np["L_train"].argmax(axis=1) == ctx.np["y_train"]
        ctx.np["L_train_correct"] = np.ascontiguousarray(ctx.np["L_train"][correct])
        ctx.np["y_train_correct"] = ctx.np["y_train"][correct]
    if pair.theirs_correct_only:
        ctx.t("L_train_correct")
        ctx.t("y_train_correct")
    if pair.inputs == "groups":
        import torch

        half = ctx.n_features // 2
        for key in ("X_train", "X_test"):
            X = ctx.np[key]
            ctx._torch[key + "_groups"] = [
                torch.from_numpy(np.ascontiguousarray(X[:, :half])),
                torch.from_numpy(np.ascontiguousarray(X[:, half:])),
            ]


def _run_theirs_once(pair, ctx):
    import pytorch_ood.detector as theirs
    import torch

    prepare_theirs_inputs(pair, ctx)
    det = pair.make_theirs(ctx, theirs)
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with bu.PeakRSS() as mem:
            t0 = time.perf_counter()
            _their_call(pair, det, ctx, "fit")
            t1 = time.perf_counter()
            with torch.no_grad():
                scores = _their_call(pair, det, ctx, "score")
            t2 = time.perf_counter()
    res.update(fit_s=t1 - t0, score_s=t2 - t1, peak=mem.peak)
    res["scores"] = scores.detach().cpu().numpy().astype(np.float64)
    if pair.theirs_info:
        res["info"] = pair.theirs_info(det)
    del det
    return res


# Pairs whose fit + score takes longer than this run once, whatever --repeats.
REPEAT_BELOW_S = 1.0


def _best_of(run_once, repeats):
    """Best fit and best score time of up to ``repeats`` fresh runs.

    Short runs are noisy (a thread wake-up costs milliseconds), so a pair is
    repeated while one run takes less than ``REPEAT_BELOW_S``; the peak
    memory kept is the largest seen.
    """
    best = run_once()
    for _ in range(max(1, repeats) - 1):
        if best["fit_s"] + best["score_s"] >= REPEAT_BELOW_S:
            break
        res = run_once()
        best["fit_s"] = min(best["fit_s"], res["fit_s"])
        best["score_s"] = min(best["score_s"], res["score_s"])
        if res["peak"] is not None and best["peak"] is not None:
            best["peak"] = max(best["peak"], res["peak"])
    return best


def run_ours(pair, ctx, profile=False, repeats=1, no_threshold=False):
    return _best_of(lambda: _run_ours_once(pair, ctx, profile, no_threshold), repeats)


def run_theirs(pair, ctx, repeats=1):
    return _best_of(lambda: _run_theirs_once(pair, ctx), repeats)


def _warm_up_pair(pair, small_ctx, ours=True, theirs=True, no_threshold=False):
    """Untimed run on a small slice: first-call costs stay out of the timings."""
    if ours:
        _guarded(_run_ours_once, pair, small_ctx, no_threshold=no_threshold)
    if theirs:
        _guarded(_run_theirs_once, pair, small_ctx)


def _guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        gc.collect()
        return {"error": bu.describe_exception(exc), "stage": "fit/score"}


# ------------------------------------------------------------------ worker
def worker_main(spec_file):
    with open(spec_file) as f:
        spec = json.load(f)
    sizes = (QUICK_CASES if spec["quick"] else CASES)[spec["case"]]
    lib = spec["lib"]
    if lib == "theirs":
        import pytorch_ood.detector  # noqa: F401 - load before limiting threads
        import torch  # noqa: F401
    import sklearn_ood.detectors  # noqa: F401

    try:
        import faiss  # noqa: F401
    except ImportError:
        pass
    bu.limit_threads(spec["threads"])
    ctx = Ctx(make_data(sizes, spec["seed"], head=spec["case"] in ("a", "b")), sizes)
    _warm_up(lib)
    warm_ctx = ctx.subset()
    gc.freeze()  # full collections between runs then skip the setup objects
    for name in spec["pairs"]:
        pair = PAIRS[name]
        no_threshold = spec.get("no_threshold", False)
        if not spec.get("no_warmup"):
            _warm_up_pair(
                pair,
                warm_ctx,
                ours=lib == "ours",
                theirs=lib == "theirs",
                no_threshold=no_threshold,
            )
        bu.worker_announce_start(name)
        bu.set_address_space_cap(spec["mem_cap"])
        repeats = spec.get("repeats", 1)
        if lib == "ours":
            res = _guarded(
                run_ours, pair, ctx, repeats=repeats, no_threshold=no_threshold
            )
        else:
            res = _guarded(run_theirs, pair, ctx, repeats=repeats)
        bu.set_address_space_cap(None)
        scores = res.pop("scores", None)
        if scores is not None:
            path = os.path.join(spec["outdir"], f"{lib}_{name}.npy")
            np.save(path, scores)
            res["scores_file"] = path
        bu.worker_announce_done(name, res)


def _warm_up(lib):
    """First calls into BLAS / LAPACK / torch load kernels: keep them untimed."""
    from scipy import linalg

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a = rng.standard_normal((300, 64)).astype(dtype)
        cov = a.T @ a
        np.linalg.eigh(cov)
        np.linalg.pinv(a)
        linalg.solve_triangular(linalg.cholesky(cov, lower=True), cov, lower=True)
    if lib in ("theirs", "both"):
        import torch

        for dtype in (torch.float32, torch.float64):
            t = torch.from_numpy(a).to(dtype)
            cov = t.T @ t
            torch.linalg.inv(cov)
            torch.linalg.eigh(cov)
            torch.linalg.pinv(t)
            torch.cholesky_inverse(torch.linalg.cholesky_ex(cov)[0])
            torch.logsumexp(t, dim=1).topk(3)
            torch.quantile(t.flatten()[:1000], 0.5)


# --------------------------------------------------------------- reporting
def summarise(case, pair, ours, theirs):
    """One table row (list of str) and one JSON record."""
    row = {"case": case, "detector": pair.name}
    for side, res in (("ours", ours), ("theirs", theirs)):
        res = res or {}
        row[f"fit_{side}"] = res.get("fit_s")
        row[f"score_{side}"] = res.get("score_s")
        row[f"peak_{side}"] = res.get("peak")
        row[f"error_{side}"] = res.get("error")
        row[f"info_{side}"] = res.get("info")
    ok_o = ours and not ours.get("error")
    ok_t = theirs and not theirs.get("error")
    speedup = None
    if ok_o and ok_t:
        speedup = (theirs["fit_s"] + theirs["score_s"]) / (
            ours["fit_s"] + ours["score_s"]
        )
    row["speedup"] = speedup
    cmp = None
    if (
        ok_o
        and ok_t
        and ours.get("scores") is not None
        and theirs.get("aligned") is not None
    ):
        cmp = bu.compare_scores(ours["scores"], theirs["aligned"])
    row["max_diff"], row["rel_diff"], row["spearman"], row["ranks_equal"] = (
        cmp if cmp else (None,) * 4
    )
    row["alignment"] = pair.align_doc
    return row


def _cell_time(rec, side, key):
    err = rec[f"error_{side}"]
    if err:
        return "failed" if key == "fit" else ""
    return bu.fmt_seconds(rec[f"{key}_{side}"])


def table_rows(records):
    rows = []
    for r in records:
        if r.get("skipped"):
            rows.append(
                [r["case"], r["detector"], "skipped: " + r["skipped"]]
                + [""] * (len(HEADER) - 3)
            )
            continue
        sp = r["speedup"]
        if sp is not None:
            speed = f"{sp:.2f}x" + ("" if sp >= 2 else " <2x")
        elif r["error_theirs"] and not r["error_ours"]:
            ours_total = r["fit_ours"] + r["score_ours"]
            speed = f"ours only ({bu.fmt_seconds(ours_total)})"
        else:
            speed = "-"
        if r["spearman"] is None:
            rank = "-"
        elif r["ranks_equal"]:
            rank = "equal"
        elif 0 < 1 - r["spearman"] < 1e-4:
            rank = f"rho 1-{1 - r['spearman']:.1g}"
        else:
            rank = f"rho {r['spearman']:.4f}"
        diff = "-" if r["max_diff"] is None else f"{r['max_diff']:.2g}"
        rel = "-" if r["rel_diff"] is None else f"{r['rel_diff']:.1g}"
        notes = []
        for side in ("ours", "theirs"):
            if r[f"error_{side}"]:
                notes.append(f"{side} failed: {r[f'error_{side}']}")
            if r[f"info_{side}"]:
                notes.append(f"{side} {r[f'info_{side}']}")
        rows.append(
            [
                r["case"],
                r["detector"],
                _cell_time(r, "ours", "fit"),
                _cell_time(r, "theirs", "fit"),
                _cell_time(r, "ours", "score"),
                _cell_time(r, "theirs", "score"),
                bu.fmt_mib(r["peak_ours"]),
                bu.fmt_mib(r["peak_theirs"]),
                speed,
                diff,
                rel,
                "; ".join(([] if rank == "-" else [rank]) + notes) or "-",
            ]
        )
    return rows


HEADER = [
    "case",
    "detector",
    "fit ours",
    "fit theirs",
    "score ours",
    "score theirs",
    "MiB ours",
    "MiB theirs",
    "speed-up",
    "max|diff|",
    "rel",
    "ranking / notes",
]


# -------------------------------------------------------------------- main
def run_case_in_process(case, sizes, pairs, args, log):
    import pytorch_ood.detector  # noqa: F401
    import torch  # noqa: F401

    t0 = time.perf_counter()
    ctx = Ctx(make_data(sizes, args.seed), sizes)
    log(f"  data generated in {time.perf_counter() - t0:.1f} s")
    _warm_up("both")
    warm_ctx = ctx.subset()
    gc.freeze()  # full collections between runs then skip the setup objects
    records = []
    their_cache = {}
    isolated = [
        p for p in pairs if p.heavy and not args.quick and our_detector_class(p)
    ]
    iso = {}
    if isolated:
        log(f"  isolated pytorch-ood runs: {', '.join(p.name for p in isolated)}")
        iso = bu.run_isolated(
            os.path.abspath(__file__),
            dict(
                case=case,
                quick=args.quick,
                seed=args.seed,
                lib="theirs",
                threads=args.threads,
                no_warmup=args.no_warmup,
                repeats=args.repeats,
                no_threshold=args.no_threshold,
            ),
            [p.name for p in isolated],
            timeout=args.timeout,
            mem_cap=args.mem_cap,
            log=log,
        )
    for pair in pairs:
        if our_detector_class(pair) is None:
            records.append(_skipped(case, pair))
            log(f"  {pair.name}: skipped (not in sklearn_ood.detectors yet)")
            continue
        t_start = time.perf_counter()
        if not args.no_warmup:
            _warm_up_pair(
                pair,
                warm_ctx,
                theirs=pair not in isolated,
                no_threshold=args.no_threshold,
            )
        ours = _guarded(
            run_ours,
            pair,
            ctx,
            profile=args.profile,
            repeats=args.repeats,
            no_threshold=args.no_threshold,
        )
        key = _their_key(pair.name)
        if pair in isolated:
            theirs = iso.get(pair.name, {"error": "missing result"})
        elif key in their_cache:
            theirs = dict(their_cache[key])  # same pytorch-ood run (KNN rows)
        else:
            theirs = _guarded(run_theirs, pair, ctx, repeats=args.repeats)
            their_cache[key] = dict(theirs)
        _align(pair, ctx, theirs)
        rec = summarise(case, pair, ours, theirs)
        records.append(rec)
        log(f"  {pair.name}: done in {time.perf_counter() - t_start:.1f} s")
        if args.profile and "profile" in ours:
            log(f"  --- cProfile of ours ({pair.name}, fit + score, by tottime)")
            log("\n".join("    " + ln for ln in ours["profile"].splitlines()[:40]))
    return records


def _align(pair, ctx, theirs):
    if theirs and not theirs.get("error") and theirs.get("scores") is not None:
        theirs["aligned"] = pair.align(np.asarray(theirs["scores"], np.float64), ctx)


def _skipped(case, pair):
    return {
        "case": case,
        "detector": pair.name,
        "skipped": f"{pair.ours} not in sklearn_ood.detectors yet",
    }


class _AlignCtx:
    def __init__(self, sizes):
        self.n_train = sizes["n_train"]
        self.n_classes = sizes["n_classes"]
        self.n_features = sizes["n_features"]


def run_case_isolated(case, sizes, pairs, args, log):
    present = [p for p in pairs if our_detector_class(p) is not None]
    records = {p.name: None for p in pairs}
    for p in pairs:
        if p not in present:
            records[p.name] = _skipped(case, p)
            log(f"  {p.name}: skipped (not in sklearn_ood.detectors yet)")
    results = {}
    for lib in ("ours", "theirs"):
        names = [p.name for p in present]
        if lib == "theirs":
            # Their KNN is one and the same for every KNN[...] row.
            names = list(dict.fromkeys(_their_key(n) for n in names))
        if not names:
            continue
        log(
            f"  {lib}: {', '.join(names)} (worker, cap {args.mem_cap / bu.GIB:.1f} "
            f"GiB, timeout {args.timeout:g} s)"
        )
        t0 = time.perf_counter()
        results[lib] = bu.run_isolated(
            os.path.abspath(__file__),
            dict(
                case=case,
                quick=args.quick,
                seed=args.seed,
                lib=lib,
                threads=args.threads,
                no_warmup=args.no_warmup,
                repeats=args.repeats,
                no_threshold=args.no_threshold,
            ),
            names,
            timeout=args.timeout,
            mem_cap=args.mem_cap,
            log=log,
        )
        log(f"  {lib} done in {time.perf_counter() - t0:.1f} s")
    actx = _AlignCtx(sizes)
    for p in present:
        ours = results.get("ours", {}).get(p.name)
        theirs = dict(results.get("theirs", {}).get(_their_key(p.name)) or {})
        _align(p, actx, theirs)
        records[p.name] = summarise(case, p, ours, theirs)
    return list(records.values())


def _their_key(name):
    return "KNN[numpy]" if name.startswith("KNN") else name


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="sklearn-ood vs pytorch-ood 0.4.0: fit/score time, peak "
        "memory and score agreement on the same synthetic features."
    )
    parser.add_argument("--cases", default="a,b,c", help="comma list of a, b, c, d")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shrink every case about tenfold (smoke test)",
    )
    parser.add_argument(
        "--only", default="", help="comma list of detectors (KNN also selects KNN[...])"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="threads for torch, BLAS, OpenMP and faiss (default 2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="best fit / score time of up to this many fresh runs; only pairs "
        f"whose fit + score takes < {REPEAT_BELOW_S:g} s are repeated (default 3)",
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed run of each pair on a small slice of the data",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per isolated fit+score (default 600, quick 120)",
    )
    parser.add_argument(
        "--mem-limit",
        type=float,
        default=None,
        help="GiB an isolated run may add to its worker's RSS "
        "(default min(20, available - 2))",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile our fit + score of each case-a pair",
    )
    parser.add_argument(
        "--no-threshold",
        action="store_true",
        help="fit ours with contamination=None: no offset_ in fit (scores only, "
        "as pytorch-ood); by default our fit time includes the threshold",
    )
    parser.add_argument("--json", default=None, help="also write the records here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timeout is None:
        args.timeout = 120.0 if args.quick else 600.0
    if args.mem_limit is None:
        avail = bu.available_memory_bytes()
        cap = 20 * bu.GIB
        if avail is not None:
            cap = min(cap, max(avail - 2 * bu.GIB, bu.GIB))
        args.mem_cap = int(cap)
    else:
        args.mem_cap = int(args.mem_limit * bu.GIB)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; choose from a, b, c, d")
    if "a" in cases:
        import pytorch_ood.detector  # noqa: F401 - load before limiting threads
        import torch  # noqa: F401
    import sklearn_ood.detectors  # noqa: F401

    try:
        import faiss  # noqa: F401
    except ImportError:
        pass
    bu.limit_threads(args.threads)
    t_all = time.perf_counter()
    print(_preamble(args))
    records = []
    for case in cases:
        sizes = (QUICK_CASES if args.quick else CASES)[case]
        pairs = pairs_for(case, args.only)
        if not pairs:
            continue
        log(f"case {CASE_TITLES[case].format(**sizes)}")
        if case == "a":
            recs = run_case_in_process(case, sizes, pairs, args, log)
        else:
            recs = run_case_isolated(case, sizes, pairs, args, log)
        records.extend(recs)
        print()
        print("case " + CASE_TITLES[case].format(**sizes))
        print(bu.fmt_table(HEADER, table_rows(recs)))
        sys.stdout.flush()
    print()
    print(_legend({r["detector"] for r in records}, args.no_threshold))
    print(
        f"\ntotal wall time {time.perf_counter() - t_all:.0f} s; load average after: "
        + " ".join(f"{x:.2f}" for x in bu.load_average())
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1, default=str)


def _preamble(args):
    import scipy
    import sklearn

    versions = [
        f"python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"scipy {scipy.__version__}",
        f"scikit-learn {sklearn.__version__}",
    ]
    for mod in ("torch", "pytorch_ood", "faiss"):
        try:
            m = __import__(mod)
            versions.append(f"{mod} {getattr(m, '__version__', '?')}")
        except ImportError:
            versions.append(f"{mod} missing")
    load = " ".join(f"{x:.2f}" for x in bu.load_average())
    return "\n".join(
        [
            "sklearn-ood vs pytorch-ood: fit / score time, peak memory, agreement",
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.platform()}; load average before: {load}",
            "versions: " + ", ".join(versions),
            f"threads: {args.threads} ({bu.thread_report()})",
            f"memory: {bu.MEMORY_METHOD}",
            f"isolated runs: cap {args.mem_cap / bu.GIB:.1f} GiB above the worker's "
            f"RSS (RLIMIT_AS + RSS watchdog), timeout {args.timeout:g} s; "
            f"seed {args.seed}{'; QUICK sizes' if args.quick else ''}",
            "threshold: "
            + (
                "none (--no-threshold: ours fitted with contamination=None)"
                if args.no_threshold
                else "ours sets offset_ in fit (contamination 0.05, <= 10,000 "
                "fit rows scored, leave-one-out for KNN / NNGuide)"
            ),
        ]
    )


def _legend(names, no_threshold=False):
    lines = ["alignment of their outlier scores to ours (higher = in-distribution):"]
    for p in PAIRS.values():
        if p.name not in names:
            continue
        lines.append(f"  {p.name:<18} {p.align_doc}")
    threshold = (
        "ours fitted with contamination=None (no threshold, as pytorch-ood)"
        if no_threshold
        else "fit ours includes setting offset_ (the contamination threshold, "
        "which pytorch-ood does not have; --no-threshold leaves it out)"
    )
    lines.append(
        f"times in seconds (ms where marked); {threshold}; MiB = peak RSS rise "
        "during fit + score; speed-up = theirs / ours (fit + score), '<2x' "
        "marks a miss of the 2x target; max|diff| after alignment, rel = "
        "max|diff| / range of our scores; ranking 'equal' = identical ranks, "
        "else Spearman's rho."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
