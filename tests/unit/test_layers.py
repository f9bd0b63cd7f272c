"""Layers (DESIGN.md section 1): a lower layer never imports a higher one.

Lowest first: `proto` imports nothing of hpcbench; `common` only `proto`; `servers`, `executor`
and `monitor` only `proto` and `common`, never each other; `recipes` may use `proto`, `common`
and, of the layers below it, only the registries of services and protocols; `coordinator` may
import anything. Every `import` and `from ... import` statement of every module counts, wherever
it stands (inside functions, under `if TYPE_CHECKING:`), relative imports resolved. Folders map
to packages through pyproject.toml's package-dir (`proto/` is `hpcbench.proto`, ...).
"""
from __future__ import annotations

import ast
import textwrap
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = "hpcbench"

# layer -> the other layers it may import (itself always)
MAY_IMPORT: dict[str, set[str]] = {
    "proto": set(),
    "common": {"proto"},
    "servers": {"proto", "common"},
    "executor": {"proto", "common"},
    "monitor": {"proto", "common"},
    "recipes": {"proto", "common"},
    "coordinator": {"proto", "common", "servers", "executor", "monitor", "recipes"},
}
# layer -> single modules of other layers it may import besides: recipes validates recipes
# against the installed services and protocols, through their registries and nothing else
MAY_IMPORT_MODULES: dict[str, set[str]] = {
    "recipes": {"hpcbench.servers.registry", "hpcbench.executor.protocol_registry"},
}


def package_dirs(repo: Path) -> dict[str, str]:
    """Layer name -> its folder, from pyproject.toml's [tool.setuptools] package-dir."""
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    return {package.split(".", 1)[1]: folder
            for package, folder in config["tool"]["setuptools"]["package-dir"].items()}


def _module_name(layer: str, folder: Path, path: Path) -> tuple[str, bool]:
    """Dotted name of the module in `path`, and whether it is a package (__init__.py)."""
    parts = [ROOT, layer, *path.relative_to(folder).with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names a statement imports (for `from m import n`, `m.n`: n may be a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return [base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names]


def _refusal(layer: str, target: str, layers: set[str]) -> str | None:
    """Why `layer` may not import `target`, or None when it may."""
    top, _, rest = target.partition(".")
    if top in layers and top != ROOT:
        return f"'{top}' is hpcbench's {top} layer under a top-level name: import {ROOT}.{target}"
    if top != ROOT or not rest:
        return None  # not hpcbench (or the bare root package)
    other = rest.split(".", 1)[0]
    if other == layer or other in MAY_IMPORT.get(layer, set()):
        return None
    if any(target == allowed or target.startswith(allowed + ".")
           for allowed in MAY_IMPORT_MODULES.get(layer, ())):
        return None
    return f"the {layer} layer may not import the {other} layer"


def own_distribution(path: Path, folder: Path) -> bool:
    """Whether `path` is in a package of its own below `folder` (a folder with its own
    pyproject.toml, such as servers/examples/*): a plugin on top of hpcbench, in no layer."""
    return any((parent / "pyproject.toml").exists()
               for parent in path.parents if parent != folder and folder in parent.parents)


def layer_violations(repo: Path, dirs: dict[str, str]) -> list[str]:
    """`file:line: statement (why)` for every import that runs up or across the layers."""
    found = []
    for layer, folder_name in sorted(dirs.items()):
        folder = repo / folder_name
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts or own_distribution(path, folder):
                continue
            module, is_package = _module_name(layer, folder, path)
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                for target in _imported(node, module, is_package):
                    why = _refusal(layer, target, set(dirs))
                    if why:
                        found.append(f"{path.relative_to(repo)}:{node.lineno}: "
                                     f"{ast.unparse(node)} ({why})")
    return found


def test_no_layer_imports_a_higher_one():
    violations = layer_violations(REPO, package_dirs(REPO))
    assert violations == [], "imports against the layers (DESIGN.md section 1):\n" + \
        "\n".join(violations)


def test_every_package_folder_has_a_layer():
    assert set(package_dirs(REPO)) == set(MAY_IMPORT), \
        "a package in pyproject.toml's package-dir needs its place in MAY_IMPORT (and DESIGN.md)"


def test_the_checker_reports_each_violating_import_with_file_and_line(tmp_path):
    """The checker can fail: a small tree with known violations, also inside a function and
    through relative imports, next to allowed imports that must not be reported."""
    files = {
        "proto/__init__.py": "",
        "proto/bad.py": """\
            import json

            def late():
                from hpcbench.coordinator.cli import main
                return main
            """,
        "common/__init__.py": "from ..servers import registry\n",
        "common/ok.py": "from hpcbench.proto import samples\nfrom . import errors\n",
        "servers/__init__.py": "",
        "servers/plugin.py": """\
            from . import registry
            from .simulator import start
            from hpcbench.common.errors import HpcbenchError
            import hpcbench.executor.engine
            """,
        "executor/__init__.py": "",
        "executor/protocol_registry.py": "from hpcbench.proto import samples\n",
        "monitor/__init__.py": "",
        "monitor/gpu.py": "import common.errors\nfrom hpcbench.executor import protocols\n",
        "recipes/__init__.py": "",
        "recipes/loader.py": """\
            from hpcbench.servers.registry import get_service
            from hpcbench.servers import registry
            from hpcbench.executor import protocol_registry
            from hpcbench.executor.protocol_registry import get_protocol
            from hpcbench.servers import simulator
            from hpcbench.executor.engine import run_trial
            """,
        "coordinator/__init__.py": "",
        "coordinator/cli/__init__.py": "",
        "coordinator/cli/main.py": "from ...executor import engine\nimport hpcbench.monitor.gpu\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    dirs = {layer: layer for layer in MAY_IMPORT}

    found = layer_violations(tmp_path, dirs)

    assert [line.split(": ", 1)[0] for line in found] == [
        "common/__init__.py:1",
        "monitor/gpu.py:1", "monitor/gpu.py:2",
        "proto/bad.py:4",
        "recipes/loader.py:5", "recipes/loader.py:6",
        "servers/plugin.py:4",
    ], "\n".join(found)
    assert found[0] == ("common/__init__.py:1: from ..servers import registry "
                        "(the common layer may not import the servers layer)")
    assert "proto/bad.py:4: from hpcbench.coordinator.cli import main" in found[3]
    assert "'common' is hpcbench's common layer under a top-level name" in found[1]
    assert "(the monitor layer may not import the executor layer)" in found[2]
    assert "from hpcbench.servers import simulator" in found[4]
    assert "import hpcbench.executor.engine (the servers layer" in found[6]
