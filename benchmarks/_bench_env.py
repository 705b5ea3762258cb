"""What every benchmark script sets before NumPy or torch load.

* Thread counts: the BLAS/OpenMP variables, from ``--threads N`` (default 2),
  because the libraries read them once, at import.
* The checkout's ``sklearn_ood`` on ``sys.path`` when the package is not
  installed (unless ``BENCH_NO_CHECKOUT_PATH`` is set).

Import it first thing (it imports only the standard library):
``import _bench_env; _bench_env.configure(sys.argv)``.
"""

import importlib.util
import os
import sys

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def thread_count(argv, default="2"):
    """The value of ``--threads`` in ``argv`` (before argparse runs)."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return default


def configure(argv):
    """Set the thread variables and the import path; return the thread count."""
    threads = thread_count(argv)
    for var in THREAD_ENV_VARS:
        os.environ[var] = threads
    if not os.environ.get("BENCH_NO_CHECKOUT_PATH"):
        if importlib.util.find_spec("sklearn_ood") is None:
            checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            sys.path.insert(1, checkout)
    return threads
