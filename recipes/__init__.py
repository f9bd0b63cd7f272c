"""Recipes: schema, loader and validator, sweep expansion, example recipes.

The API other components use:
- `load_recipe(path) -> Recipe`: parse, validate (HpcbenchError E006 listing every problem),
  apply defaults; `Recipe.data` is the resolved dict, `Recipe.path` the file.
- `load_recipe_text(text, where) -> Recipe`: the same for recipe text (Control.StartSession).
- `validate(data) -> list[Problem]`: every problem (path, value, expected) of a recipe dict.
- `expand_trials(recipe) -> list[Trial]`: the sweep as trials with stable ids (a capacity
  search's trials are chosen as it runs: coordinator/session/capacity.py).
- `durations.parse_duration(value) -> float` seconds.
"""
from hpcbench.common.durations import parse_duration
from hpcbench.recipes.loader import Recipe, load_recipe, load_recipe_text, recipe_from_dict, validate
from hpcbench.recipes.problems import Problem
from hpcbench.recipes.sweep import (
    SWEEP_AXES,
    Trial,
    count_trials,
    describe_trials,
    expand_trials,
    trial_id,
)

__all__ = [
    "Problem", "Recipe", "SWEEP_AXES", "Trial", "count_trials", "describe_trials", "expand_trials",
    "load_recipe", "load_recipe_text", "parse_duration", "recipe_from_dict", "trial_id",
    "validate",
]
