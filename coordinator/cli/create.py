"""`hpcbench create`: write a recipe from the wizard's answers (typed on stdin or given as flags)."""
from __future__ import annotations

import argparse
import sys

HELP = "Create a recipe interactively (or from flags)"


def configure(parser: argparse.ArgumentParser) -> None:
    from hpcbench.recipes.wizard import QUESTIONS

    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write the recipe (default: recipes/SCENARIO.yaml)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument("-y", "--yes", action="store_true",
                        help="ask nothing: take the defaults for every answer not given as a flag")
    answers = parser.add_argument_group("answers (skip the matching question)")
    for question in QUESTIONS:
        answers.add_argument(question.flag, dest=f"answer_{question.key}", metavar="VALUE",
                             help=question.prompt)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from hpcbench.common.errors import config_error
    from hpcbench.common.files import write_atomic
    from hpcbench.recipes import recipe_from_dict
    from hpcbench.recipes.wizard import QUESTIONS, answer_all, build_recipe

    given = {question.key: getattr(args, f"answer_{question.key}") for question in QUESTIONS}
    if not args.yes:
        print("Create a recipe: press Enter to take the [default].")
    try:
        answers = answer_all(given, None if args.yes else _ask)
    except ValueError as error:
        raise config_error("cannot create the recipe from these answers",
                           str(error).splitlines()) from None
    except EOFError:
        raise config_error("input ended before every question was answered",
                           ["answer on stdin, or pass the answers as flags with --yes "
                            "(`hpcbench create --help` lists them)"]) from None
    data = build_recipe(answers)
    output = Path(args.output or f"recipes/{answers['scenario']}.yaml")
    recipe_from_dict(data, output)  # the wizard must never write a recipe that fails validation
    if output.exists() and not args.force:
        raise config_error(f"{output} exists", ["pass --force to overwrite, or -o OTHER.yaml"])
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, "# Created by `hpcbench create`; check it with `hpcbench validate`.\n"
                 + yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {output}; next: hpcbench plan {output}  or  hpcbench run {output}")
    return 0


def _ask(question, default) -> str:
    shown = "" if default is None else f" [{_show(default)}]"
    print(f"{question.prompt}{shown}: ", end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        print()
        raise EOFError
    return line


def _show(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
