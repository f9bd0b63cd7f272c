"""The recipe JSON Schema (recipe.schema.json) and its errors translated into `Problem`s.

jsonschema's own messages ("'2x' is not valid under any of the given schemas") do not tell a
user what to write; the schema carries an `x-expected` phrase per field instead, and unknown keys
get a "did you mean" suggestion from the keys allowed at that place. Keys the reference's recipe
formats used and hpcbench has no place for are listed per object in `x-refused`, each with what
to write instead.
"""
from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from hpcbench.common.durations import parse_duration
from hpcbench.recipes.problems import MISSING, Problem, dotted


@lru_cache(maxsize=1)
def recipe_schema() -> dict:
    """The recipe schema as a dict (shipped as package data next to this module)."""
    text = resources.files("hpcbench.recipes").joinpath("recipe.schema.json").read_text()
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    formats = FormatChecker(formats=())
    formats.checks("duration", raises=ValueError)(lambda value: parse_duration(value) >= 0)
    return Draft202012Validator(recipe_schema(), format_checker=formats)


def schema_problems(data: object) -> list[Problem]:
    """Every schema violation of `data`, each as a Problem with path, value and expectation."""
    problems: list[Problem] = []
    for error in _validator().iter_errors(data):
        problems.extend(_translate(error))
    unique = {str(problem): problem for problem in problems}  # values may be unhashable
    return sorted(unique.values(), key=lambda problem: problem.path)


def suggest(word: str, choices: list[str]) -> str:
    """' (did you mean "x"?)' for the closest of `choices`, or '' when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _translate(error: ValidationError) -> list[Problem]:
    path = list(error.absolute_path)
    inside = [sub for sub in error.context or ()
              if len(sub.absolute_path) > len(error.absolute_path)]
    if error.validator == "anyOf" and isinstance(error.instance, dict) and inside:
        # a value of one of the forms (say, a mapping where a duration or a mapping is
        # accepted) that is wrong inside: name the wrong part, as for a plain mapping
        return [problem for sub in inside for problem in _translate(sub)]
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        refused = schema.get("x-refused", {})
        unknown = [key for key in error.instance if key not in known]
        return [Problem(dotted(path + [key]), error.instance[key],
                        f"no key '{key}' here; write instead: {refused[key]}" if key in refused
                        else _unknown_key(str(key), known, dotted(path)))
                for key in unknown]
    if error.validator == "required":
        properties = schema.get("properties", {})
        return [Problem(dotted(path + [key]), MISSING,
                        "this required key: " + properties.get(key, {}).get("x-expected",
                                                                             _describe(properties.get(key, {}))))
                for key in error.validator_value if key not in error.instance]
    expected = schema.get("x-expected")
    if error.validator == "enum":
        choices = [str(choice) for choice in error.validator_value]
        hint = suggest(error.instance, choices) if isinstance(error.instance, str) else ""
        expected = "one of " + ", ".join(choices) + hint
    return [Problem(dotted(path), error.instance, expected or error.message)]


def _unknown_key(key: str, known: list[str], where: str) -> str:
    hint = suggest(key, known)
    if hint:
        return f"no key '{key}' here{hint}"
    elsewhere = [place for place in key_places(key) if place != where]
    if elsewhere:
        return f"no key '{key}' here; it belongs under {' or '.join(elsewhere)}"
    return f"no key '{key}' here; allowed keys: {', '.join(known)}"


@lru_cache(maxsize=256)
def key_places(key: str) -> tuple[str, ...]:
    """Dotted paths of the objects whose schema lists `key` ("" is the top level), so a key
    written at the wrong level can be pointed to its place."""
    places: list[str] = []
    definitions = recipe_schema()["$defs"]

    def walk(schema: dict, where: str, depth: int) -> None:
        if depth > 8:
            return
        if "$ref" in schema:
            schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        properties = schema.get("properties", {})
        if key in properties:
            places.append(where or "the top level")
        for name, child in properties.items():
            walk(child, f"{where}.{name}" if where else name, depth + 1)

    walk(recipe_schema(), "", 0)
    return tuple(places)


def _describe(schema: dict) -> str:
    """A short phrase for a field without an x-expected, from its type or enum."""
    if "enum" in schema:
        return "one of " + ", ".join(str(choice) for choice in schema["enum"])
    kind = schema.get("type", "value")
    return {"object": "a mapping", "string": "a string", "array": "a list"}.get(kind, str(kind))
