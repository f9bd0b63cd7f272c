"""`hpcbench list`: the recipes in a folder as a table of file, scenario, service and trials."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "List the recipes in a folder with scenario, service and trial count"
DEFAULT_FOLDER = "recipes/examples"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", default=None,
                        help=f"folder of *.yaml recipes (default: {DEFAULT_FOLDER}, else the "
                             f"examples installed with hpcbench)")


def run(args: argparse.Namespace) -> int:
    from hpcbench.common.errors import HpcbenchError, config_error
    from hpcbench.recipes import count_trials, load_recipe

    folder = _folder(args.folder)
    try:
        is_folder = folder.is_dir()
    except OSError as error:              # e.g. a name longer than the filesystem allows
        raise config_error(f"cannot read {str(folder)[:80]}: {error.strerror}",
                           ["give a folder that holds *.yaml recipes"]) from None
    if not is_folder:
        raise config_error(f"not a folder: {folder}", ["give a folder that holds *.yaml recipes"])
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        print(f"no recipes (*.yaml) in {folder}")
        return 0
    rows = [("FILE", "SCENARIO", "SERVICE", "TRIALS")]
    for path in files:
        try:
            recipe = load_recipe(path)
        except HpcbenchError as error:
            rows.append((path.name, "-", "-", f"invalid ({len(error.details)} problem(s); "
                                              f"run hpcbench validate)"))
            continue
        rows.append((path.name, recipe.scenario, recipe.workload["service"],
                     "search" if recipe.data.get("search") else str(count_trials(recipe))))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def _folder(given: str | None) -> Path:
    """The folder given, else ./recipes/examples, else the examples shipped in the package."""
    if given is not None:
        return Path(given)
    if Path(DEFAULT_FOLDER).is_dir():
        return Path(DEFAULT_FOLDER)
    from importlib import resources
    return Path(str(resources.files("hpcbench.recipes").joinpath("examples")))
