"""``python -m sklearn_ood``: the ``sklearn-ood`` command."""

import sys

from sklearn_ood.cli import main

if __name__ == "__main__":
    sys.exit(main())
