"""Sphinx extension: detector tables and the checks that keep the docs complete.

* ``.. detector-table::`` (all detectors) or ``.. detector-table:: gaussian``
  (one family) renders a table built from :func:`sklearn_ood.all_detectors`
  and each class's ``_family`` / ``_input_kind``, so a new detector appears
  without editing the page.
* At ``builder-inited`` the build fails (``ExtensionError``, whatever ``-W``)
  when a detector has no section on its family page (a ``.. _det-<Name>:``
  label in ``detectors/<family>.rst``, followed by a ``.. math::`` formula
  and a ``:class:`` link to the API entry), when a page describes a detector of
  another family or one that does not exist, when a family of
  ``sklearn_ood._registry.FAMILIES`` has no page, or when a public name of a
  documented module is missing from ``api.rst``.
* ``.. command-help:: benchmark`` shows the ``--help`` text of an
  ``sklearn-ood`` sub-command, taken from :func:`sklearn_ood.cli.main` at
  build time, so the options listed are those of the installed command.
"""

import contextlib
import importlib
import inspect
import io
import os
import pathlib
import re
import sys

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError

from sklearn_ood._registry import FAMILIES as _REGISTRY_FAMILIES

# The family pages: `_family` -> page name under detectors/, one per family of
# the registry (sklearn_ood._registry.FAMILIES).
FAMILIES = {family: family.replace("-", "_") for family in _REGISTRY_FAMILIES}
FAMILY_TITLES = {
    "logits": "Logits",
    "fitted-logits": "Fitted logits",
    "gaussian": "Class-conditional Gaussians",
    "learned-centers": "Learned centres",
    "neighbors": "Nearest neighbours",
    "head-aware": "Head-aware",
    "activation-shaping": "Activation shaping",
    "model": "Model-based (raw inputs)",
}
INPUT_KINDS = {
    "logits": "logits",
    "features": "features (one layer)",
    "layers": "several layers",
    "inputs": "raw inputs + model",
}
# Modules whose ``__all__`` must appear in the API reference.
API_MODULES = (
    "sklearn_ood",
    "sklearn_ood.base",
    "sklearn_ood.detectors",
    "sklearn_ood.metrics",
    "sklearn_ood.torch",
    "sklearn_ood.datasets",
    "sklearn_ood.evaluation",
    "sklearn_ood.plotting",
    "sklearn_ood.exceptions",
)
_LABEL = re.compile(r"^\.\. _det-([A-Za-z0-9_]+):\s*$", re.MULTILINE)


def _detectors():
    from sklearn_ood import all_detectors

    return all_detectors(include_torch=True)


def public_path(cls):
    """Where users import a detector from: its public package."""
    package = ".".join(cls.__module__.split(".")[:2])
    return f"{package}.{cls.__name__}"


def family_problems(docs_dir):
    """Every way the family pages and the registry disagree, as messages."""
    docs_dir = pathlib.Path(docs_dir)
    problems = []
    detectors = dict(_detectors())
    documented = {}
    for family, page in FAMILIES.items():
        path = docs_dir / "detectors" / f"{page}.rst"
        if not path.exists() or family not in FAMILY_TITLES:
            problems.append(
                f"family {family!r} has no page: add docs/detectors/{page}.rst, "
                "list it in docs/detectors/index.rst and give it a title in "
                "FAMILY_TITLES of docs/sphinxext/detector_families.py"
            )
            continue
        text = path.read_text(encoding="utf-8")
        labels = list(_LABEL.finditer(text))
        for label, following in zip(labels, labels[1:] + [None]):
            name = label.group(1)
            documented[name] = family
            section = text[label.end() : following.start() if following else None]
            # Each entry gives the formula and links to the API entry.
            if ".. math::" not in section:
                problems.append(f"{path.name}: the section of {name} has no formula")
            if not re.search(rf":class:`~?[\w.]*\b{re.escape(name)}`", section):
                problems.append(
                    f"{path.name}: the section of {name} does not link to its API "
                    f"entry (:class:`{name}`)"
                )
    for name, cls in detectors.items():
        family = getattr(cls, "_family", None)
        if family not in FAMILIES:
            problems.append(
                f"{name}._family = {family!r} is not one of the documented "
                f"families {sorted(FAMILIES)} (sklearn_ood._registry.FAMILIES)"
            )
        elif documented.get(name) != family:
            problems.append(
                f"{name} (family {family!r}) has no section on "
                f"docs/detectors/{FAMILIES[family]}.rst: add one starting with "
                f"the label '.. _det-{name}:' (formula, paper, API link)"
            )
    for name, family in documented.items():
        if name not in detectors:
            problems.append(
                f"docs/detectors/{FAMILIES[family]}.rst describes {name}, "
                "which all_detectors() does not list"
            )
    return problems


def api_problems(docs_dir):
    """Public names of the documented modules that api.rst does not list."""
    text = (pathlib.Path(docs_dir) / "api.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   ([A-Za-z_][A-Za-z0-9_]*)\s*$", text, re.MULTILINE))
    problems = []
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if name.startswith("__") or not (
                inspect.isclass(obj) or inspect.isfunction(obj)
            ):
                continue
            if name not in listed:
                problems.append(f"{module_name}.{name} is missing from docs/api.rst")
    return problems


def check_docs(app):
    problems = family_problems(app.srcdir) + api_problems(app.srcdir)
    if problems:
        raise ExtensionError(
            "the documentation is out of date:\n  " + "\n  ".join(problems)
        )


def _first_line(cls):
    doc = inspect.getdoc(cls) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class DetectorTable(Directive):
    """A table of the detectors of one family (or of all of them)."""

    optional_arguments = 1

    def run(self):
        family = self.arguments[0] if self.arguments else None
        if family is not None and family not in FAMILIES:
            raise self.error(f"unknown detector family {family!r}")
        rows = [
            (name, cls)
            for name, cls in _detectors()
            if family is None or cls._family == family
        ]
        lines = [".. list-table::", "   :header-rows: 1", ""]
        header = ["Detector", "Input", "partial_fit", "Summary"]
        if family is None:
            header.insert(1, "Family")
        lines.append("   * - " + header[0])
        lines.extend(f"     - {cell}" for cell in header[1:])
        for _name, cls in rows:
            cells = [f":class:`~{public_path(cls)}`"]
            if family is None:
                cells.append(
                    f":doc:`{FAMILY_TITLES[cls._family]} "
                    f"</detectors/{FAMILIES[cls._family]}>`"
                )
            cells.append(INPUT_KINDS.get(cls._input_kind, cls._input_kind))
            cells.append("yes" if hasattr(cls, "partial_fit") else "")
            cells.append(_first_line(cls))
            lines.append("   * - " + cells[0])
            lines.extend(f"     - {cell}" if cell else "     -" for cell in cells[1:])
        container = nodes.container()
        self.state.nested_parse(
            StringList(lines, source="detector-table"), self.content_offset, container
        )
        return container.children


class CommandHelp(Directive):
    """The ``--help`` text of an ``sklearn-ood`` (sub-)command."""

    optional_arguments = 1

    def run(self):
        from sklearn_ood.cli import main

        argv = [*self.arguments, "--help"]
        out = io.StringIO()
        # argparse names the program after sys.argv[0] and wraps at the
        # terminal's width: pin both so the page does not depend on the build.
        saved_argv0, saved_columns = sys.argv[0], os.environ.get("COLUMNS")
        sys.argv[0], os.environ["COLUMNS"] = "sklearn-ood", "88"
        try:
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main(argv)
        finally:
            sys.argv[0] = saved_argv0
            if saved_columns is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = saved_columns
        text = out.getvalue().strip()
        if not text:
            raise self.error(f"sklearn-ood {' '.join(argv)} printed nothing")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("detector-table", DetectorTable)
    app.add_directive("command-help", CommandHelp)
    app.connect("builder-inited", check_docs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
