"""Sweep expansion: list values of sweepable workload fields -> one Trial per combination.

Axes combine as a cross product (batch [1,4,8] x concurrency [1,8,32] x prompt_len [128,512] =
18 trials), and repetitions multiply that. A trial's id is built from its swept values
("batch-4_concurrency-8_prompt_len-128"), sorted by axis name, so it is readable, stable across
runs and independent of key order in the YAML; results of finished trials are found by it.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

from hpcbench.recipes.loader import Recipe

# Sweepable axes as dotted paths inside `workload`.
SWEEP_AXES = ("batch", "clients_per_node", "concurrency", "load.rate", "max_tokens",
              "output_len", "prompt_len")


@dataclass(frozen=True)
class Trial:
    """One measured run of a sweep.

    index: 0-based position in the session; repetition: 1-based repeat number; params: the swept
    values (axis -> value; empty without sweeps); workload: the resolved workload with the swept
    values substituted and durations in float seconds.
    """

    id: str
    index: int
    repetition: int
    params: dict
    workload: dict


def sweep_axes(workload: dict) -> dict[str, list]:
    """axis -> list of values, for every sweepable field whose value is a list."""
    axes = {}
    for axis in SWEEP_AXES:
        value = _get(workload, axis)
        if isinstance(value, list):
            axes[axis] = value
    return axes


def count_trials(recipe: Recipe) -> int:
    """How many trials `expand_trials` yields, without building them."""
    total = recipe.data["repetitions"]
    for values in sweep_axes(recipe.workload).values():
        total *= len(values)
    return total


def describe_trials(recipe: Recipe) -> str:
    """What a recipe runs, in words: "18 trial(s)", or its capacity search (whose probes, one
    trial each, are chosen as it goes: coordinator/session/capacity.py)."""
    search = recipe.data.get("search")
    if search:
        return (f"capacity search on {search['axis']} from {search['low']:g} to "
                f"{search['high']:g}, a trial per probe")
    return f"{count_trials(recipe)} trial(s)"


def expand_trials(recipe: Recipe) -> list[Trial]:
    """Every trial of a resolved recipe, repetition-major (all combinations, then repeat)."""
    axes = sweep_axes(recipe.workload)
    names = sorted(axes)
    combinations = list(itertools.product(*(axes[name] for name in names)))
    repetitions = recipe.data["repetitions"]
    trials = []
    for repetition in range(1, repetitions + 1):
        for combination in combinations:
            params = dict(zip(names, combination))
            trials.append(Trial(id=trial_id(params, repetition if repetitions > 1 else None),
                                index=len(trials), repetition=repetition, params=params,
                                workload=trial_workload(recipe.workload, params)))
    return trials


def trial_id(params: dict, repetition: int | None = None) -> str:
    """`{"prompt_len": 128, "concurrency": 8}` -> "concurrency-8_prompt_len-128" (+ "_rep-2")."""
    parts = [f"{name}-{_format(params[name])}" for name in sorted(params)]
    if repetition is not None:
        parts.append(f"rep-{repetition}")
    return "_".join(parts) or "default"


def trial_workload(workload: dict, params: dict) -> dict:
    """The workload with swept values substituted; prompt_len/output_len set the token counts."""
    resolved = copy.deepcopy(workload)
    for axis, value in params.items():
        _set(resolved, axis, value)
    for axis, side in (("prompt_len", "input_tokens"), ("output_len", "output_tokens")):
        if resolved.get(axis) is not None:
            resolved["dataset"][side] = {"distribution": "fixed", "mean": resolved[axis]}
    return resolved


def _format(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _get(workload: dict, dotted_path: str) -> object:
    node = workload
    for key in dotted_path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _set(workload: dict, dotted_path: str, value: object) -> None:
    *parents, leaf = dotted_path.split(".")
    node = workload
    for key in parents:
        node = node[key]
    node[leaf] = value
