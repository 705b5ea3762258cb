"""Sphinx configuration of the sklearn-ood documentation.

Build offline, warnings as errors::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Nothing is fetched at build time (no intersphinx); the gallery runs the
scripts of ``examples/`` on the CPU.
"""

import os
import pathlib
import sys
import warnings

import sklearn_ood

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "sphinxext"))

project = "sklearn-ood"
author = "sklearn-ood developers"
copyright = "sklearn-ood developers"
version = release = sklearn_ood.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "detector_families",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb"]
# `x` in a docstring is code, as in scikit-learn's documentation.
default_role = "literal"

# -- API reference -----------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "inherited-members": True}


def _defined_here(obj):
    """Whether a class member is sklearn-ood's own (not scikit-learn's, torch's)."""
    # A property is judged by its getter, a classmethod or partial by its function.
    for attribute in ("fget", "func", "__func__"):
        inner = getattr(obj, attribute, None)
        if inner is not None:
            obj = inner
            break
    return (getattr(obj, "__module__", None) or "").startswith("sklearn_ood")


def _skip_foreign_members(app, what, name, obj, skip, options):
    # Methods inherited from scikit-learn, torch and skorch (get_params,
    # set_output, forward hooks, ...) are documented by those projects; their
    # docstrings cross-reference pages that do not exist here.
    if what == "class" and not _defined_here(obj):
        return True
    return None


# numpydoc: members are listed by the autodoc template, not by numpydoc (as
# scikit-learn does); docstrings are validated by tests/test_docstrings.py,
# not by the build.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_use_plots = False

# -- Markdown pages (conventions.md, saving.md) ------------------------------
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# -- Gallery -----------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(DOCS.parent / "examples"),
    "gallery_dirs": "auto_examples",
    # Backreferences feed the "Gallery examples using ..." list of each API page.
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("sklearn_ood",),
    # Every script of examples/ is executed (not only plot_*.py): they print
    # their results, which the gallery shows under the code.
    "filename_pattern": r".*\.py$",
    "plot_gallery": "True",
    # A script that raises fails the build.
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib",),
    "matplotlib_animations": False,
    "min_reported_time": 1,
}

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-ood {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 9,
    # No version switcher, icon links or analytics: nothing to fetch.
    "navbar_end": ["theme-switcher"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"index": [], "install": [], "benchmark": []}
html_show_sourcelink = False

# Matplotlib in the gallery renders to files, never to a window.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings(
    "ignore", message="Matplotlib is currently using agg", category=UserWarning
)


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
