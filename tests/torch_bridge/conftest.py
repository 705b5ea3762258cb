"""Fixtures shared by the torch tests."""

import pytest

try:
    import torch
except ImportError:  # pragma: no cover - the torch tests skip themselves
    torch = None
else:
    # The test models are tiny: one thread is faster, and several threads per
    # process slow to a crawl when pytest-xdist workers (or other jobs) share
    # the CPU cores (each forward pass then waits on oversubscribed threads).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_cnn():
    """A DigitsCNN trained once on digits 0-4 (a second or two on a CPU).

    Returns ``(model, X_train, y_train, X_test, X_ood)``: images of shape
    ``(n, 1, 8, 8)`` in [0, 1], a stratified 70/30 split of digits 0-4, and
    digits 5-9 as near OOD. Tests must not modify the model (copy it first).
    """
    pytest.importorskip("torch")
    from _torch_helpers import digits_images, train_classifier
    from sklearn.model_selection import train_test_split

    from sklearn_ood.torch import DigitsCNN

    X, y = digits_images()
    is_id = y < 5
    X_train, X_test, y_train, _ = train_test_split(
        X[is_id], y[is_id], test_size=0.3, random_state=0, stratify=y[is_id]
    )
    torch.manual_seed(0)
    model = train_classifier(DigitsCNN(n_classes=5, width=8), X_train, y_train)
    return model, X_train, y_train, X_test, X[~is_id]
