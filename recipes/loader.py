"""Read a recipe file: parse YAML, list every problem at once, return the resolved recipe.

`load_recipe` is the one entry point components use; a bad recipe raises HpcbenchError E006
whose details hold one line per problem (path, bad value, what is expected), never a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from hpcbench.common.errors import config_error
from hpcbench.recipes.defaults import resolve
from hpcbench.recipes.problems import Problem
from hpcbench.recipes.schema import schema_problems
from hpcbench.recipes.semantics import semantic_problems


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: `data` has every default applied and durations in float seconds."""

    path: Path | None
    data: dict

    @property
    def scenario(self) -> str:
        return self.data["scenario"]

    @property
    def workload(self) -> dict:
        return self.data["workload"]


def validate(data: object) -> list[Problem]:
    """Every problem of a recipe dict (schema and semantic rules); empty when it is valid."""
    if not isinstance(data, dict):
        return [Problem("", data, "a mapping of recipe keys (scenario, workload, ...)")]
    return schema_problems(data) + semantic_problems(data)


def recipe_from_dict(data: object, path: Path | None = None) -> Recipe:
    """Validate an already parsed recipe and resolve its defaults (E006 on any problem)."""
    where = str(path) if path else "recipe"
    try:
        problems = validate(data)
        resolved = None if problems else resolve(data)
    except RecursionError:   # nested thousands of levels deep: no recipe looks like that
        raise _too_deep(where) from None
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise config_error(f"{where}: {count}; fix each and run `hpcbench validate` again",
                           [str(problem) for problem in problems])
    return Recipe(path=path, data=resolved)


def load_recipe(path: str | Path) -> Recipe:
    """Parse, validate and resolve the recipe at `path` (HpcbenchError E006 on any problem)."""
    path = Path(path)
    return recipe_from_dict(read_yaml(path), path)


def read_yaml(path: Path) -> object:
    """The parsed YAML document at `path`; unreadable files and YAML errors become E006."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise config_error(f"recipe file not found: {path}",
                           ["check the path; `hpcbench list recipes/examples` shows the examples"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise config_error(f"cannot read recipe {path}: {error}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as error:
        raise config_error(f"{path} is not valid YAML",
                           [" ".join(str(error).split())]) from None
    except RecursionError:   # e.g. "[[[[...": the parser recurses once per level
        raise _too_deep(str(path)) from None


class _TooDeep:
    """Stands for a value nested beyond Python's recursion limit (it cannot be shown)."""

    def __repr__(self) -> str:
        return "a structure nested thousands of levels deep"


def _too_deep(where: str):
    """E006 for a document nested deeper than the parser and validator can recurse."""
    problem = Problem("", _TooDeep(), "a recipe a few levels deep (flatten the structure)")
    return config_error(f"{where} is nested too deeply to be a recipe", [str(problem)])


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (the first value would be lost)",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
