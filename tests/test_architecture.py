"""The package rule of docs (``assets <- xrcore <- sessions -> net``), read from every module's imports.

Every import is a dependency, wherever it is written: at module level, inside a function, under
``TYPE_CHECKING``, relative, through ``importlib.import_module("...")``, and in Python source held in a
string that a child process runs (``python -c``, a benchmark's child script).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: For each folder under the root, the modules no file in it may import (a module and its submodules).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "assets": ("xrcore", "sessions", "net"),  # geometry and files only
    "xrcore": ("sessions", "net"),  # the runtime knows twins (assets), not consultations
    "net": ("assets", "xrcore", "sessions"),  # messages, not meshes or GL
    "bench": ("sessions.cli",),  # benchmarks drive the libraries, not the argparse front end
}


@dataclass(frozen=True)
class Violation:
    """One import that a rule of `FORBIDDEN` refuses."""

    path: str  # relative to the checked root, with forward slashes
    line: int
    imported: str
    forbidden: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.imported} ({self.forbidden} is off limits in {self.path.split('/')[0]}/)"


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """Dotted name of the module in ``path`` and whether it is a package (``__init__.py``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names; relative ones resolved against ``module``."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join([*base, node.module] if node.module else base)


def _dynamic_import(node: ast.Call) -> str | None:
    """The module of ``importlib.import_module("x")`` or ``__import__("x")`` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name in ("import_module", "__import__") and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def imported_modules(source: str, module: str = "", is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module that ``source`` imports or may import.

    ``from a import b`` gives both ``a`` and ``a.b`` (``b`` may be a submodule). A string constant that
    parses as Python with an import in it counts too: it is a script some process runs.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            if base:
                yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name
        elif isinstance(node, ast.Call):
            target = _dynamic_import(node)
            if target is not None:
                yield node.lineno, target
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value:
            try:
                inner = list(imported_modules(node.value, module, is_package))
            except (SyntaxError, ValueError):
                continue  # prose, not code
            for line, name in inner:
                yield node.lineno + line - 1, name


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(root: Path, rules: dict[str, tuple[str, ...]] = FORBIDDEN) -> list[Violation]:
    """Every import under ``root`` that ``rules`` forbids, in file and line order."""
    found = []
    for folder, forbidden in rules.items():
        for path in sorted((root / folder).rglob("*.py")):
            module, is_package = module_name(path, root)
            seen = set()
            for line, name in imported_modules(path.read_text(encoding="utf-8"), module, is_package):
                for package in forbidden:
                    if _within(name, package) and (line, package) not in seen:
                        seen.add((line, package))
                        found.append(Violation(path.relative_to(root).as_posix(), line, name, package))
    return found


def test_packages_import_only_what_the_design_allows() -> None:
    """No module of assets, xrcore, net or bench imports a package the design keeps it from."""
    found = violations(ROOT)
    assert not found, "imports against the package rule:\n" + "\n".join(map(str, found))


def test_the_rules_cover_every_package_that_exists() -> None:
    """Each folder a rule names holds Python modules (a renamed package cannot slip out of its rule)."""
    assert all(any((ROOT / folder).rglob("*.py")) for folder in FORBIDDEN)


PLANTED = [
    ("assets/loaders/x.py", "import net.peer\n", "net"),
    ("assets/x.py", "def f():\n    from xrcore import scene\n    return scene\n", "xrcore"),
    ("xrcore/x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from net.participant import Participant\n", "net"),
    ("xrcore/render/x.py", "from ...sessions import run\n", "sessions"),
    ("xrcore/x.py", "import importlib\nm = importlib.import_module('sessions.run')\n", "sessions"),
    ("net/x.py", "from assets import twin\n", "assets"),
    ("net/sub/__init__.py", "from ... import xrcore\n", "xrcore"),
    ("bench/x.py", "from sessions.cli.consult import run_on_loop\n", "sessions.cli"),
    ("bench/x.py", "from sessions import cli\n", "sessions.cli"),
    ("bench/x.py", 'CHILD = r"""\nimport sys\nfrom sessions.cli import main\n"""\n', "sessions.cli"),
]


@pytest.mark.parametrize(("path", "source", "forbidden"), PLANTED, ids=[f"{p}:{f}" for p, _, f in PLANTED])
def test_a_planted_violation_is_caught(tmp_path: Path, path: str, source: str, forbidden: str) -> None:
    """The same check, run on a tree holding one forbidden import, reports exactly that import."""
    target = tmp_path / path
    target.parent.mkdir(parents=True)
    target.write_text(source)
    found = violations(tmp_path)
    assert [(v.path, v.forbidden) for v in found] == [(path, forbidden)], found
    assert source.splitlines()[found[0].line - 1].strip(), "the line number points at the import"


def test_allowed_imports_pass(tmp_path: Path) -> None:
    """What the rule allows (and names that only start like a package's) is not reported."""
    allowed = {
        "xrcore/x.py": "import assets.twin\nfrom assets import cache\n",
        "net/x.py": "import network_tools\nimport assets_like\nfrom . import peer\n",
        "assets/x.py": "import numpy\n'''Imports nothing from net: see net.peer.'''\n",
        "bench/x.py": "from sessions.consult import runner\nimport net.peer\nfrom xrcore import scene\n",
        "sessions/x.py": "import net, xrcore, assets\nfrom sessions.cli import main\n",
    }
    for path, source in allowed.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(source)
    assert violations(tmp_path) == []


#: Third-party modules only some files may import, and those files (paths, or folders ending in "/"):
#: OpenGL calls belong to the renderer; contexts are made in xrcore/gl; the OpenXR backend passes
#: EGL/GLX handles and texture names to the runtime. OpenXR itself is one package's business.
CONFINED: dict[str, tuple[str, ...]] = {
    "OpenGL": ("xrcore/render/", "xrcore/gl/", "xrcore/backends/openxr/"),
    "xr": ("xrcore/backends/openxr/",),
}
CONFINED_FOLDERS = ("assets", "xrcore", "sessions", "net")


def confinement_violations(root: Path) -> list[Violation]:
    """Every import of a :data:`CONFINED` module from a file outside the places allowed it."""
    found = []
    for folder in CONFINED_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            module, is_package = module_name(path, root)
            seen = set()
            for line, name in imported_modules(path.read_text(encoding="utf-8"), module, is_package):
                for confined, allowed in CONFINED.items():
                    placed = any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in allowed)
                    if _within(name, confined) and not placed and (line, confined) not in seen:
                        seen.add((line, confined))
                        found.append(Violation(rel, line, name, confined))
    return found


def test_only_the_renderer_issues_gl_calls_and_only_the_openxr_backend_talks_to_openxr() -> None:
    """OpenGL is imported only in xrcore/render, xrcore/gl and the OpenXR backend; `xr` only in that backend."""
    found = confinement_violations(ROOT)
    assert not found, "\n".join(map(str, found))


@pytest.mark.parametrize(("path", "source", "confined"), [
    ("sessions/run.py", "from OpenGL import GL\n", "OpenGL"),
    ("xrcore/scene.py", "def f():\n    import OpenGL.GL\n", "OpenGL"),
    ("xrcore/render/x.py", "import xr\n", "xr"),
])  # fmt: skip
def test_a_gl_or_openxr_import_out_of_place_is_caught(tmp_path: Path, path: str, source: str, confined: str) -> None:
    """The same check, run on a tree holding one such import, reports exactly that import."""
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    (tmp_path / "xrcore" / "render").mkdir(parents=True, exist_ok=True)
    (tmp_path / "xrcore" / "render" / "ok.py").write_text("from OpenGL import GL\n")
    assert [(v.path, v.forbidden) for v in confinement_violations(tmp_path)] == [(path, confined)]
