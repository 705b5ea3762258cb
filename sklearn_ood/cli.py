"""The ``sklearn-ood`` command: the benchmark that is the package's main job.

``sklearn-ood benchmark`` trains (or reuses from its cache) a small CNN on
an offline dataset, extracts its features once, runs every registered
detector that applies, prints the results table and writes it with two
figures into ``--output``. ``sklearn-ood list`` prints the detectors.
:func:`main` is the console script and ``python -m sklearn_ood``.

Exit status: 0 on success, 2 for a wrong argument (or a file it names that
cannot be used), 1 when the run cannot go on (e.g. a dataset that is not
installed); either way one line on stderr, ``sklearn-ood: error: ...``.
"""

import argparse
import sys

from sklearn_ood._benchmark._common import BenchmarkError, Log, UsageError, one_line

__all__ = ["main"]

PROG = "sklearn-ood"

_DESCRIPTION = "Out-of-distribution detection benchmarks with scikit-learn detectors."
_BENCHMARK_DESCRIPTION = """\
Train (or reuse from the cache) a classifier on the ID classes, extract its
logits and layer features once, run every detector of sklearn_ood that
applies (all_detectors(); new ones appear by themselves), print AUROC per
OOD set, and write results.csv, results.json, roc.png and scores.png into
--output. The default run (digits, one seed, every detector) takes under two
minutes on two CPU cores; nothing is downloaded.
"""
_BENCHMARK_EPILOG = """\
examples:
  sklearn-ood benchmark
  sklearn-ood benchmark --seeds 0 1 2 --detectors Energy Mahalanobis neighbors
  sklearn-ood benchmark --preset fashion-mnist
  sklearn-ood benchmark --model model.pt --arch digits-cnn --ood-data mine=x.npz
  sklearn-ood benchmark --model scripted.pt --id-data id.npz --ood-data far=ood/

A .npz for --id-data holds X (samples along the first axis, e.g. images
(n, C, H, W); uint8 is scaled to [0, 1]) and y (integer labels), and
optionally X_test and y_test (otherwise 30 % of X is held out per seed); a
folder holds one sub-folder of images per class, read as RGB at
--image-size. An --ood-data .npz holds X; a folder holds images (any depth),
read at the size and channels of the ID images.

exit status: 0 done, 2 wrong argument or unusable file, 1 the run failed.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``main`` prints them, no usage dump)."""

    def error(self, message):
        raise UsageError(message)


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _build_parser():
    from sklearn_ood import __version__
    from sklearn_ood._benchmark._training import ARCHS, default_cache_dir

    parser = _Parser(prog=PROG, description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser(
        "list",
        help="print every detector with its family and input kind",
        description="Print every detector of all_detectors(): its family, what "
        "it consumes, and what it needs from the model.",
    )

    bench = commands.add_parser(
        "benchmark",
        help="run the detectors on a trained model; table, CSV, JSON, figures",
        description=_BENCHMARK_DESCRIPTION,
        epilog=_BENCHMARK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = bench.add_argument_group("data")
    data.add_argument(
        "--preset",
        choices=("digits", "fashion-mnist"),
        default="digits",
        help="offline benchmark: scikit-learn's digits (default) or "
        "Fashion-MNIST (apt-get install -y dataset-fashion-mnist)",
    )
    data.add_argument(
        "--id-classes",
        nargs="+",
        type=_integer,
        metavar="C",
        help="the preset's ID classes (default: 0 1 2 3 4); the others are "
        "the near-OOD set",
    )
    data.add_argument(
        "--fashion-path",
        metavar="DIR",
        help="folder of the Fashion-MNIST idx files (default: the Debian "
        "package's /usr/share/datasets/fashion-mnist/)",
    )
    data.add_argument(
        "--n-train",
        type=int,
        metavar="N",
        help="fashion-mnist: ID training images, a stratified subsample "
        "(default: 6000)",
    )
    data.add_argument(
        "--n-test",
        type=int,
        metavar="N",
        help="fashion-mnist: test images per set (default: 2000)",
    )
    data.add_argument(
        "--id-data",
        metavar="PATH",
        help="your ID data instead of a preset: a .npz (X, y[, X_test, y_test]) "
        "or a folder with one sub-folder of images per class",
    )
    data.add_argument(
        "--ood-data",
        action="append",
        metavar="NAME=PATH",
        help="an OOD test set: a .npz holding X, or a folder of images; "
        "repeatable (added to a preset's sets)",
    )
    data.add_argument(
        "--image-size",
        type=int,
        default=32,
        metavar="PX",
        help="--id-data folders are read as PX x PX RGB images (default: 32); "
        "--ood-data folders take the ID images' size and channels",
    )

    model = bench.add_argument_group("model")
    model.add_argument(
        "--model",
        metavar="FILE",
        help="your trained model: a TorchScript file, or a state dict "
        "(torch.save(model.state_dict())) with --arch; read without "
        "unpickling code",
    )
    model.add_argument(
        "--arch",
        choices=tuple(ARCHS),
        help="architecture of a --model state dict, or of the network trained "
        "on --id-data (default: digits-cnn for images under 16 x 16 pixels, "
        "fashion-cnn otherwise; the presets train their own)",
    )
    model.add_argument(
        "--n-classes",
        type=int,
        metavar="K",
        help="logits of a --model state dict (default: the ID classes)",
    )
    model.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="submodules for the multi-layer detectors (Gram, MultiMahalanobis) "
        "(default: the model's children named block1, block2, ...)",
    )
    model.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help="training epochs (default: 30 for digits-cnn, 15 for fashion-cnn)",
    )
    model.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads (default: 1, the fastest for the small reference "
        "CNNs, whose batches are too small to split; raise it for a large "
        "--model)",
    )
    model.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (CUDA when available, default), cpu, cuda:1, ...",
    )

    run = bench.add_argument_group("run")
    run.add_argument(
        "--detectors",
        nargs="+",
        metavar="NAME",
        help="detector names or families (logits, fitted-logits, gaussian, "
        "neighbors, head-aware, activation-shaping, model), case-insensitive "
        "(default: all; see sklearn-ood list)",
    )
    run.add_argument(
        "--seeds",
        nargs="+",
        type=_integer,
        default=[0],
        metavar="SEED",
        help="one run per seed (split, training, detectors); with several, "
        "mean +- std (default: 0)",
    )
    run.add_argument(
        "--output",
        default="ood-results",
        metavar="DIR",
        help="folder for results.csv, results.json, roc.png, scores.png "
        "(default: ./ood-results)",
    )
    run.add_argument(
        "--cache-dir",
        default=default_cache_dir(),
        metavar="DIR",
        help="trained models are cached here (default: "
        "${XDG_CACHE_HOME:-~/.cache}/sklearn-ood)",
    )
    run.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars or messages; only the table",
    )
    return parser


def _list_detectors():
    from sklearn_ood._benchmark._catalogue import FAMILIES, catalogue, describe
    from sklearn_ood._registry import _torch_available

    order = {family: i for i, family in enumerate(FAMILIES)}
    rows = sorted(
        catalogue(), key=lambda item: (order.get(item[1]._family, 99), item[0])
    )
    table = [("detector", "family", "input", "needs")]
    table += [
        (name, cls._family, cls._input_kind, ", ".join(describe(cls)) or "-")
        for name, cls in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if not _torch_available():
        print(
            "\nPyTorch is not installed: the model detectors are not listed "
            '(pip install "sklearn-ood[torch]").'
        )
    return 0


def _benchmark(args):
    from sklearn_ood._benchmark._report import format_table, write_outputs
    from sklearn_ood._benchmark._run import check_torch, run_benchmark

    check_torch()
    import torch

    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1; got {args.threads}.")
    log = Log(quiet=args.quiet)
    threads = torch.get_num_threads()
    # Restored afterwards: main() may be called from a Python session.
    torch.set_num_threads(args.threads)
    try:
        result = run_benchmark(args, log)
        paths = write_outputs(result, args.output, log)
    finally:
        torch.set_num_threads(threads)
    print(format_table(result))
    print(f"\nwritten: {', '.join(paths.values())}")
    return 0


def main(argv=None):
    """Run the ``sklearn-ood`` command; return its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 2 for a wrong argument, 1 when the run failed; the
        error is one line on stderr.

    Examples
    --------
    >>> from sklearn_ood.cli import main
    >>> main(["--version"])  # doctest: +ELLIPSIS
    sklearn-ood ...
    0
    """
    try:
        parser = _build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            raise UsageError(
                "choose a command: benchmark or list (see sklearn-ood --help)"
            )
        if args.command == "list":
            return _list_detectors()
        return _benchmark(args)
    except (UsageError, BenchmarkError) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
