"""Private helpers shared by several detector modules.

Row chunking (:mod:`~sklearn_ood.utils._chunking`), order statistics, group
sums, the checks of logits and their labels, and warnings that point at the
user's call. Detector modules import these instead of each other's private
names; nothing here is public API.
"""
