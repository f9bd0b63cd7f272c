"""`hpcbench submit`: validate a recipe, build the sbatch options from it, and submit run.sbatch.

The options come from the recipe (partition, account, qos, time, nodes, exclusive, GPUs; see
`hpcbench.coordinator.launch.slurm.sbatch_options`), so users never count nodes by hand. `--dry-run`
prints the sbatch command instead of running it.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

HELP = "Submit a recipe to Slurm (sbatch --parsable) with options built from the recipe"

# run.sbatch lives at the repository root; an editable install finds it beside the packages.
_REPO_SCRIPT = Path(__file__).resolve().parents[2] / "run.sbatch"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("--script", default=None,
                        help="batch script to submit (default: ./run.sbatch, else the "
                             "repository's run.sbatch)")
    parser.add_argument("--sbatch-option", action="append", default=[], metavar="OPTION",
                        help="extra sbatch option, e.g. --sbatch-option=--mail-type=END "
                             "(repeatable; wins over the recipe's)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the sbatch command line instead of submitting")


def batch_script(explicit: str | None) -> Path:
    """The script to submit: --script, else ./run.sbatch, else the repository's (E006 if none)."""
    from hpcbench.common.errors import config_error

    candidates = [Path(explicit)] if explicit else [Path("run.sbatch"), _REPO_SCRIPT]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise config_error(f"batch script not found: {', '.join(map(str, candidates))}",
                       ["fix: run from the hpcbench checkout or pass --script PATH/run.sbatch"])


def run(args: argparse.Namespace) -> int:
    from hpcbench.coordinator.launch import slurm
    from hpcbench.recipes.loader import load_recipe

    recipe = load_recipe(args.recipe)
    options = slurm.sbatch_options(recipe.data) + list(args.sbatch_option)
    script, recipe_path = batch_script(args.script), str(Path(args.recipe).resolve())
    if args.dry_run:
        print(shlex.join(["sbatch", "--parsable", *options, str(script), recipe_path]))
        return 0
    job_id = slurm.submit(str(script), recipe_path, options)
    print(job_id)
    return 0
