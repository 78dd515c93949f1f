"""pyproject.toml's dependency split matches what each subcommand imports.

The images install the package with one extra each (`[worker]`, `[operator]`), so an
import that its extra does not provide would only show up as a crash inside an image.
This walks the package's import graph from each subcommand's module (function-level
imports included, `if TYPE_CHECKING:` blocks excluded) and checks every third-party
import against the distributions the core plus that extra install.
"""

import ast
import contextlib
import importlib.metadata
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import audioextract
from audioextract.cli import COMMANDS

DIST = "audio-extract-operator"
PACKAGE_ROOT = Path(audioextract.__file__).parent
# Which extra each subcommand's image installs ("" is the core alone).
COMMAND_EXTRAS = {"crds": "", "worker": "worker", "run": "worker", "operator": "operator"}
# DESIGN 4: the worker never imports kopf or a Kubernetes client.
WORKER_FORBIDDEN = {"kopf", "kubernetes", "kubernetes_asyncio", "pykube"}


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from pkg import sub` imports the submodule when there is one.
            found.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return found


@cache
def import_closure(entry: str) -> tuple[frozenset[str], frozenset[str]]:
    """(audioextract modules, top-level third-party names) reachable from ``entry``."""
    seen: set[str] = set()
    third_party: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        assert path is not None, f"{name} has no source file"
        # Importing a submodule runs its parents' __init__ first.
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        tree = ast.parse(path.read_text(), filename=str(path))
        for imported in _imports(tree, name, path.name == "__init__.py"):
            top = imported.split(".")[0]
            if top == "audioextract":
                if _module_file(imported) is not None:
                    todo.append(imported)
            elif top and top not in sys.stdlib_module_names:
                third_party.add(top)
    return frozenset(seen), frozenset(third_party)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _requirements(dist: str, extras: frozenset[str]) -> frozenset[str]:
    """The distributions ``dist`` with ``extras`` installs, transitively (canonical names)."""
    out: set[str] = set()
    for line in importlib.metadata.requires(dist) or []:
        req = Requirement(line)
        marker_ok = req.marker is None or any(
            req.marker.evaluate({"extra": extra}) for extra in (extras or {""})
        )
        if not marker_ok:
            continue
        name = _canonical(req.name)
        if name != _canonical(DIST):  # `dev` names the package's own extras
            out.add(name)
        # An optional dependency of a dependency may be missing from this venv.
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out |= _requirements(req.name, frozenset(req.extras))
    return frozenset(out)


def installed_by(extra: str) -> frozenset[str]:
    """What `pip install audio-extract-operator[extra]` brings (core alone for "")."""
    return _requirements(DIST, frozenset({extra} if extra else set()))


def distributions_of(top_level: str) -> set[str]:
    """The distributions that provide an importable top-level name."""
    return {_canonical(d) for d in importlib.metadata.packages_distributions().get(top_level, [])}


def test_every_subcommand_has_an_extra() -> None:
    assert set(COMMAND_EXTRAS) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMAND_EXTRAS))
def test_the_extra_covers_every_import(command: str) -> None:
    module, _ = COMMANDS[command]
    _, third_party = import_closure(module)
    available = installed_by(COMMAND_EXTRAS[command])
    missing = {
        top: sorted(distributions_of(top))
        for top in sorted(third_party)
        if not distributions_of(top) & available
    }
    extra = COMMAND_EXTRAS[command] or "core"
    assert not missing, (
        f"`audio-extract {command}` imports what [{extra}] does not install: {missing}"
    )


@pytest.mark.parametrize("command", ["worker", "run"])
def test_the_worker_image_never_loads_the_operator_stack(command: str) -> None:
    module, _ = COMMANDS[command]
    modules, third_party = import_closure(module)
    assert not third_party & WORKER_FORBIDDEN
    assert not {m for m in modules if m.startswith("audioextract.handlers")}
    assert not {_canonical(n) for n in WORKER_FORBIDDEN} & installed_by("worker")


def test_the_walk_sees_lazy_and_relative_imports() -> None:
    # The walk must find the operator's stack from its entry point, or the checks
    # above could pass by seeing nothing.
    modules, third_party = import_closure(COMMANDS["operator"][0])
    assert {"kopf", "kubernetes", "pydantic"} <= third_party
    assert "audioextract.reconcile" in modules
    # local.main imports its runner inside a function (start-up stays light).
    modules, third_party = import_closure(COMMANDS["run"][0])
    assert "audioextract.local.runner" in modules
    assert {"aiohttp", "yaml", "pydantic"} <= third_party


def test_dev_installs_both_images_dependencies() -> None:
    assert installed_by("worker") | installed_by("operator") <= installed_by("dev")


def test_a_missing_module_spec_is_not_silently_skipped() -> None:
    # Every module the walk found is a real, importable module of the package.
    modules, _ = import_closure(COMMANDS["operator"][0])
    for name in modules:
        assert importlib.util.find_spec(name) is not None, name
