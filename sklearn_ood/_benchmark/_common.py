"""Errors and messages shared by the benchmark steps."""

import sys


class UsageError(Exception):
    """A wrong argument, or a file it names that cannot be used (exit 2)."""

    exit_status = 2


class BenchmarkError(Exception):
    """The run could not go on, e.g. a dataset is not installed (exit 1)."""

    exit_status = 1


class Log:
    """Progress messages on stderr (stdout keeps the table), off with quiet.

    Parameters
    ----------
    quiet : bool
        Silence messages and progress bars.
    """

    def __init__(self, quiet=False):
        self.quiet = quiet

    def __call__(self, message):
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    @property
    def verbose(self):
        """The ``verbose`` level for the package's estimators (bars or not)."""
        return 0 if self.quiet else 1


def one_line(exc):
    """An exception's message on one line (for ``sklearn-ood: error: ...``)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
