"""Every Python package folder in the repository is shipped in the wheel (pyproject lists it),
except the example plugins, which are distributions of their own (servers/examples/*)."""
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
            if any((parent / "pyproject.toml").exists() for parent in init.parents
                   if REPO / root in parent.parents):
                continue    # a plugin package of its own, not part of hpcbench
            relative = init.parent.relative_to(REPO / root)
            found.add(".".join([name, *relative.parts]))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
    assert listed - found == set(), "these listed packages have no folder"


def test_the_example_plugins_are_distributions_of_their_own():
    """Each servers/examples/<name> has its own pyproject.toml registering entry points, and
    none of them is in hpcbench's package list."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    examples = sorted((REPO / "servers" / "examples").glob("*/pyproject.toml"))
    assert [path.parent.name for path in examples] == ["kserve", "triton"]
    for path in examples:
        project = tomllib.loads(path.read_text())["project"]
        assert any(name.startswith("hpcbench") for name in project["dependencies"])
        assert set(project["entry-points"]) <= {"hpcbench.services", "hpcbench.protocols"}
    assert not [name for name in config["packages"] if "examples" in name]
