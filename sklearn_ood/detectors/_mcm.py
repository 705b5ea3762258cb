"""MCM: zero-shot OOD detection from vision-language embeddings.

The image embedding of a row is matched against one text embedding per ID
class (the "concepts"); the class text embeddings play the role of a
classification head, so the embeddings of any vision-language encoder work.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from sklearn_ood.base import BaseDetector
from sklearn_ood.detectors._head import check_head
from sklearn_ood.detectors._knn_search import normalize_rows
from sklearn_ood.detectors._softmax import max_softmax64

__all__ = ["MCM"]


def _class_embeddings(head, n_features):
    """The rows of ``head`` as float64 class embeddings (bias dropped)."""
    if callable(head) and not hasattr(head, "weight") and not hasattr(head, "coef_"):
        head = head(n_features)  # built once the width is known
    if isinstance(head, list):  # nested lists of numbers: a matrix of rows
        try:
            rows = np.asarray(head, dtype=np.float64)
        except (TypeError, ValueError):  # a [W, b] pair
            rows = None
        if rows is not None and rows.ndim == 2:
            head = rows
    if getattr(head, "ndim", None) == 2 and not hasattr(head, "weight"):
        head = (head, None)  # a matrix of embeddings (NumPy array, torch tensor)
    W, _ = check_head(head, n_features)
    return W


class MCM(BaseDetector):
    r"""Maximum concept matching (MCM): top softmax of the cosine similarities.

    Ming, Cai, Gu, Sun, Li & Li, "Delving into Out-of-Distribution Detection
    with Vision-Language Representations", NeurIPS 2022. A row :math:`x` is
    the image embedding of a vision-language model and :math:`t_1, \dots,
    t_C` are the text embeddings of the ID class names (e.g. of prompts "a
    photo of a <class>"); with the cosine similarity :math:`\cos(x, t) =
    x^\top t / (\lVert x \rVert \lVert t \rVert)` and temperature
    :math:`T`,

    .. math::

        s(x) = \max_c \frac{e^{\cos(x, t_c) / T}}
                           {\sum_{j=1}^{C} e^{\cos(x, t_j) / T}}

    Higher is more ID; :math:`1/C \le s(x) \le 1`. The text embeddings play
    the role of a classification head (its rows), so any vision-language
    encoder's outputs work: CLIP's image and text towers, or those of ALIGN,
    SigLIP, ..., as long as the two live in the same embedding space.
    Nothing is learned: the method is zero-shot, and ``fit`` only checks the
    width and sets ``offset_`` from the ID rows (``y`` is ignored).

    pytorch-ood 0.4.0's ``MCM`` returns :math:`-s` (it normalises both
    embeddings as here and computes in float32): ours is minus theirs. The
    default :math:`T = 1` is the paper's; CLIP's own zero-shot classifier
    is the softmax at :math:`T = 0.01` (its logit scale of 100). An all-zero
    row has cosine 0 with every class and the lowest score :math:`1/C`.

    Parameters
    ----------
    head : array-like, tuple, object or callable
        The class text embeddings :math:`t_c`: an array (NumPy array,
        torch tensor, nested lists) of shape ``(n_classes, n_features)``,
        any head that :func:`~sklearn_ood.detectors.check_head` accepts
        (its weight rows are the embeddings; a bias is not used, as a
        cosine has none), or a callable ``head(n_features)`` returning one
        of these. Their norms do not matter (each is scaled to unit
        length); a zero row, or fewer than two classes, is refused.
    temperature : float > 0, default=1.0
        Temperature :math:`T` that divides the cosine similarities.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    class_embeddings_ : ndarray of shape (n_classes, n_features)
        The class text embeddings scaled to unit length,
        :math:`t_c / \lVert t_c \rVert`.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Width of the embeddings.

    See Also
    --------
    MaxSoftmax : The same maximum softmax, on a classifier's logits.
    PNML : A regret of the head's softmax on unit-length features.
    KNN : Distance to the nearest ID embeddings, which needs ID fit data.

    References
    ----------
    .. [1] Y. Ming, Z. Cai, J. Gu, Y. Sun, W. Li and Y. Li, "Delving into
       Out-of-Distribution Detection with Vision-Language Representations",
       NeurIPS 2022. https://arxiv.org/abs/2211.13445

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import MCM
    >>> text = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> images = np.array([[2.0, 0.1, 0.0], [0.0, 0.1, 3.0]])
    >>> mcm = MCM(head=text, temperature=0.1).fit(images)
    >>> mcm.score_samples(images).round(4)
    array([0.9999, 0.5825])
    """

    _family = "head-aware"
    _stateless = True

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "head": [object],  # resolved and checked in fit
        "temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, head, temperature=1.0, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.temperature = temperature

    def _fit(self, X, y):
        embeddings = _class_embeddings(self.head, X.shape[1])
        if len(embeddings) < 2:
            raise ValueError(
                f"MCM needs the text embeddings of at least 2 classes; got "
                f"{len(embeddings)} (the softmax of a single class is the "
                "constant 1)."
            )
        zero = ~np.any(embeddings != 0, axis=1)
        if zero.any():
            raise ValueError(
                f"MCM's class embedding(s) {np.flatnonzero(zero).tolist()} are "
                "all zero, so they have no direction to match; pass the text "
                "embeddings of every ID class."
            )
        self.class_embeddings_ = normalize_rows(embeddings)

    def _score(self, X):
        cosines = normalize_rows(X, dtype=np.float64) @ self.class_embeddings_.T
        return max_softmax64(cosines, self.temperature)
