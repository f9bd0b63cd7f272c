"""Every Python package folder in the repository is shipped in the wheel (pyproject lists it)."""
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {path: name for name, path in config["package-dir"].items()}
    listed = set(config["packages"])
    found = set()
    for root, name in roots.items():
        for init in (REPO / root).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / root)
            found.add(".".join([name, *relative.parts]))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
    assert listed - found == set(), "these listed packages have no folder"
