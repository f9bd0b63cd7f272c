"""`hpcbench submit`: validate a recipe, build the sbatch options from it, and submit run.sbatch.

The options come from the recipe (partition, account, qos, time, nodes, exclusive, GPUs; see
`hpcbench.coordinator.launch.slurm.sbatch_options`), so users never count nodes by hand. `--dry-run`
prints the sbatch command instead of running it. With `--remote HOST` it runs from a laptop:
the recipe, the files it names and `--wheel`s go to the login node over SSH and are submitted
there (hpcbench.coordinator.remote.upload; docs/remote.md).
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from hpcbench.coordinator.cli.remote_options import add_remote_arguments

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
    parser.add_argument("--wheel", action="append", default=[], metavar="PATH",
                        help="with --remote: a plugin wheel to copy to the login node and "
                             "install into its hpcbench's environment (repeatable)")
    add_remote_arguments(parser, session_flags=False)


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
    if args.remote:
        return _submit_remote(args, recipe)
    if args.wheel:
        from hpcbench.common.errors import config_error
        raise config_error("--wheel needs --remote HOST",
                           ["fix: here, pip-install the wheel into hpcbench's venv instead"])
    options = slurm.sbatch_options(recipe.data) + list(args.sbatch_option)
    script, recipe_path = batch_script(args.script), str(Path(args.recipe).resolve())
    if args.dry_run:
        print(shlex.join(["sbatch", "--parsable", *options, str(script), recipe_path]))
        return 0
    job_id = slurm.submit(str(script), recipe_path, options)
    print(job_id)
    return 0


def _submit_remote(args: argparse.Namespace, recipe) -> int:
    """Copy, install, submit on the login node; print the job id and the session id."""
    import sys

    from hpcbench.coordinator.cli.remote_options import connection, refuse_local_flags
    from hpcbench.coordinator.remote import upload
    from hpcbench.coordinator.remote.ssh import check_remote_program, remote_path

    refuse_local_flags(args, "script", "dry_run")
    with connection(args) as ssh:
        check_remote_program(ssh, args.remote_hpcbench)
        base = upload.make_remote_dir(ssh, args.remote_dir)
        prepared = upload.prepare(Path(args.recipe), args.wheel, base)
        upload.send(ssh, prepared, args.remote_dir)
        upload.install_wheels(ssh, prepared, args.remote_dir, args.remote_hpcbench)
        hpcbench = shlex.quote(args.remote_hpcbench)
        # run.sbatch runs the job on the Python that has hpcbench: the remote command's own
        python = f'"${{HPCBENCH_PYTHON:-$(dirname "$(command -v {hpcbench})")/python}}"'
        options = " ".join(shlex.quote(f"--sbatch-option={option}")
                           for option in args.sbatch_option)
        submitted = ssh.run(f"cd {remote_path(args.remote_dir)} && HPCBENCH_PYTHON={python} "
                            f"{hpcbench} submit {shlex.quote(prepared.recipe_name)} {options}")
    if submitted.returncode != 0:   # the remote hpcbench's own error, code and all
        sys.stderr.write(submitted.stderr.decode(errors="replace"))
        return submitted.returncode
    job_id = submitted.stdout.decode(errors="replace").strip()
    results = recipe.data["results_dir"]
    run_dir = results if results.startswith("/") else f"{args.remote_dir}/{results}"
    print(f"job       {job_id}")
    print(f"session   {job_id}")
    print(f"results   {args.remote}:{run_dir}/{recipe.scenario}/{job_id}")
    print(f"follow    hpcbench watch --remote {args.remote} --job {job_id}", file=sys.stderr)
    return 0
