"""A recipe problem: where (dotted path), what was found, and what is expected instead.

Both the schema check and the semantic checks produce these, so a user sees every problem of a
recipe at once in one uniform shape: `workload.duration: got "2x"; expected a duration ...`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


class _Missing:
    """Marker for a required key that is absent (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "(missing)"


MISSING = _Missing()
SHOWN_CHARACTERS = 120   # of a bad value in a problem line


@dataclass(frozen=True)
class Problem:
    path: str
    value: object
    expected: str

    def __str__(self) -> str:
        shown = repr(self.value) if self.value is not MISSING else "nothing (key is missing)"
        if len(shown) > SHOWN_CHARACTERS:   # a 1 MiB string or a 1000-value list: its start
            shown = shown[:SHOWN_CHARACTERS - 3] + "..."
        return f"{self.path or '(recipe)'}: got {shown}; expected {self.expected}"


def dotted(parts: Iterable[object]) -> str:
    """`["endpoints", 0, "x"]` -> `endpoints[0].x` (the path syntax of every message)."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def lookup(data: object, path: str, default: object = None) -> object:
    """The value at a dotted path of nested dicts, or `default` where any step is not a dict."""
    node = data
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node
