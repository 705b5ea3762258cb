"""Checks of logits and of labels that index logit columns."""


def check_n_classes(X, name):
    """Refuse logits of a single class: their softmax is the constant 1."""
    if X.shape[1] < 2:
        raise ValueError(
            f"{name} needs logits of at least 2 classes; got n_features = {X.shape[1]}."
        )


def check_logit_labels(y, n_classes, name):
    """Refuse ID labels that do not index a logit column."""
    if y is not None and y.size and y.max() >= n_classes:
        raise ValueError(
            f"{name} reads a label as the index of its logit column, but y "
            f"contains label {int(y.max())} and X has only {n_classes} logit "
            f"columns; valid class labels are 0..{n_classes - 1} (negative "
            "labels mark out-of-distribution rows)."
        )
