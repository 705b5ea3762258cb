"""sklearn-ood: out-of-distribution detection with scikit-learn estimators.

Every detector follows scikit-learn's outlier-detector API: ``score_samples``
is higher for more in-distribution inputs, ``predict`` returns +1 (ID) or -1
(OOD), and ``contamination`` sets the share of training data rejected.
"""

from sklearn_ood._registry import all_detectors
from sklearn_ood.base import BaseDetector

__version__ = "0.1.0.dev0"

__all__ = ["BaseDetector", "all_detectors", "__version__"]
