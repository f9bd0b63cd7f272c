"""`hpcbench validate`: check recipes and list every problem with its path, value and fix."""
from __future__ import annotations

import argparse
import sys

HELP = "Check a recipe and list every problem with its path"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe YAML file(s)")


def run(args: argparse.Namespace) -> int:
    from hpcbench.common.errors import HpcbenchError
    from hpcbench.recipes import describe_trials, load_recipe

    failed = 0
    for path in args.recipes:
        try:
            recipe = load_recipe(path)
        except HpcbenchError as error:
            failed += 1
            print(error.render(), file=sys.stderr)
            continue
        print(f"ok: {path} (scenario {recipe.scenario}, service {recipe.workload['service']}, "
              f"{describe_trials(recipe)})")
    return 2 if failed else 0
