"""Root pytest configuration: collect the torch bridge only where torch is."""

import importlib.util

# `--doctest-modules` imports every module of the package; sklearn_ood.torch
# needs the torch extra, so a NumPy-only install skips it instead of failing.
collect_ignore_glob = (
    []
    if importlib.util.find_spec("torch")
    else ["sklearn_ood/torch/*", "sklearn_ood/datasets/_image_folders.py"]
)
