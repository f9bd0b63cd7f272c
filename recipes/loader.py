"""Read a recipe file: parse YAML, list every problem at once, return the resolved recipe.

`load_recipe` is the one entry point components use; a bad recipe raises HpcbenchError E006
whose details hold one line per problem (path, bad value, what is expected), never a traceback.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from hpcbench.common.errors import config_error
from hpcbench.common.limits import MAX_RECIPE_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES
from hpcbench.recipes.defaults import resolve
from hpcbench.recipes.problems import Problem, dotted
from hpcbench.recipes.schema import schema_problems
from hpcbench.recipes.semantics import semantic_problems

try:   # libyaml's event parser; the composer and constructor stay Python (they hold the limits)
    from yaml.cyaml import CParser
except ImportError:   # pragma: no cover - PyYAML built without libyaml
    CParser = None


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
    problems = schema_problems(data) + semantic_problems(data)
    reported = {problem.path for problem in problems}
    return problems + [problem for problem in _non_finite(data, ())
                       if problem.path not in reported]


def _non_finite(node: object, path: tuple) -> list[Problem]:
    """NaN and infinity anywhere (YAML's .nan / .inf): NaN slips through every minimum and
    maximum of the schema (each comparison is false) and neither has a use in a recipe."""
    if isinstance(node, float) and not math.isfinite(node):
        return [Problem(dotted(path), node, "a finite number (.nan and .inf are not numbers a "
                                            "recipe can use)")]
    if isinstance(node, dict):
        return [problem for key, child in node.items()
                for problem in _non_finite(child, (*path, key))]
    if isinstance(node, list):
        return [problem for index, child in enumerate(node)
                for problem in _non_finite(child, (*path, index))]
    return []


def recipe_from_dict(data: object, path: Path | None = None, where: str | None = None) -> Recipe:
    """Validate an already parsed recipe and resolve its defaults (E006 on any problem);
    `where` names it in messages (default: the path, else "recipe")."""
    where = where or (str(path) if path else "recipe")
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


def load_recipe_text(text: str, where: str = "recipe text") -> Recipe:
    """Parse, validate and resolve a recipe given as text, e.g. Control.StartSession's
    recipe_yaml; `where` names it in messages. The same limits as a file apply."""
    if not isinstance(text, str):
        raise config_error(f"{where}: expected the recipe as YAML text, got {type(text).__name__}")
    _check_size(len(text.encode("utf-8", "surrogatepass")), where)
    return recipe_from_dict(parse_yaml(text, where), None, where=where)


def read_yaml(path: Path) -> object:
    """The parsed YAML document at `path`; unreadable, oversized, non-UTF-8 files and every YAML
    error become E006 naming the file and the line and column."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_RECIPE_BYTES + 1)   # never more: /dev/zero is a "file" too
    except FileNotFoundError:
        raise config_error(f"recipe file not found: {path}",
                           ["check the path; `hpcbench list recipes/examples` shows the examples"]) from None
    except OSError as error:
        raise config_error(f"cannot read recipe {path}: {error.strerror or error}") from None
    _check_size(len(data), str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise config_error(f"cannot read recipe {path}: it is not UTF-8 text",
                           [f"line {line}, column {column}: byte 0x{data[error.start]:02x} is not "
                            "UTF-8; save the file as UTF-8"]) from None
    return parse_yaml(text, str(path))


def _check_size(size: int, where: str) -> None:
    """A file is read up to MAX_RECIPE_BYTES + 1 bytes, so its `size` says only "too large"."""
    if size > MAX_RECIPE_BYTES:
        raise config_error(f"{where} is too large to be a recipe: over {MAX_RECIPE_BYTES:,} bytes",
                           [f"a recipe is at most {MAX_RECIPE_BYTES:,} bytes (1 MiB); the examples "
                            "are a few KB. Keep prompts and traces in their own files "
                            "(workload.dataset.path, workload.load.trace)"])


def parse_yaml(text: str, where: str = "recipe") -> object:
    """The one YAML document in `text`, parsed within the limits (nodes after alias expansion,
    nesting depth); every YAML problem becomes E006 with its line and column."""
    try:
        text.encode("utf-8")     # libyaml reads UTF-8: a lone surrogate cannot be sent to it
    except UnicodeEncodeError as error:
        line = text.count("\n", 0, error.start) + 1
        column = error.start - (text.rfind("\n", 0, error.start) + 1) + 1
        raise config_error(f"{where} is not valid YAML",
                           [f"line {line}, column {column}: U+{ord(text[error.start]):04X} is a "
                            "lone surrogate, not a character; remove it"]) from None
    loader = None
    try:
        loader = _BoundedLoader(text)      # the pure-Python reader checks characters here
        return loader.get_single_data()
    except _LimitError as error:
        raise config_error(f"{where} is beyond the limits of a recipe", [_located(error)]) from None
    except yaml.MarkedYAMLError as error:
        fixes = [_located(error)]
        if "single document" in str(error.context):
            fixes.append("fix: a recipe is one YAML document: remove the `---` lines and merge "
                         "the parts (one recipe holds the service, under workload.service and "
                         "servers, and the load, under workload)")
        raise config_error(f"{where} is not valid YAML", fixes) from None
    except yaml.reader.ReaderError as error:    # a control character: a position, no mark
        position = error.position if isinstance(error.position, int) else 0
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        raise config_error(f"{where} is not valid YAML",
                           [f"line {line}, column {column}: character {_codepoint(error)} is "
                            f"not allowed ({error.reason}); remove it"]) from None
    except yaml.YAMLError as error:
        raise config_error(f"{where} is not valid YAML", [" ".join(str(error).split())]) from None
    except RecursionError:   # defence in depth: the composer stops at MAX_YAML_DEPTH first
        raise _too_deep(where) from None
    finally:
        if loader is not None:
            loader.dispose()


def _codepoint(error: yaml.reader.ReaderError) -> str:
    character = error.character
    if isinstance(character, str) and len(character) == 1:
        character = ord(character)
    return f"U+{character:04X}" if isinstance(character, int) else repr(character)


def _located(error: yaml.MarkedYAMLError) -> str:
    """`line 3, column 7: found duplicate key ...` (1-based, like editors)."""
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = " ".join(str(error.problem or "").split())
    context = " ".join(str(error.context or "").split())
    if context and error.context_mark is not None and error.context_mark is not mark:
        context += f" (line {error.context_mark.line + 1}, column {error.context_mark.column + 1})"
    return where + "; ".join(part for part in (problem, context) if part)


class _TooDeep:
    """Stands for a value nested beyond Python's recursion limit (it cannot be shown)."""

    def __repr__(self) -> str:
        return "a structure nested thousands of levels deep"


def _too_deep(where: str):
    """E006 for a document nested deeper than the parser and validator can recurse."""
    problem = Problem("", _TooDeep(), "a recipe a few levels deep (flatten the structure)")
    return config_error(f"{where} is nested too deeply to be a recipe", [str(problem)])


class _LimitError(yaml.composer.ComposerError):
    """The document is beyond a limit (size after aliases, depth), not malformed."""


class _BoundedComposer(Composer):
    """A composer that counts every node as it is built, aliases at their expanded size, and
    stops at MAX_YAML_NODES or MAX_YAML_DEPTH: an alias bomb ("billion laughs": each level
    repeats the one before it nine times) is refused after reading a few hundred bytes, before
    anything walks the expanded tree. An alias inside the node it names (a recursive structure)
    is refused too."""

    def __init__(self) -> None:
        super().__init__()
        self._nodes = 0                    # nodes so far, aliases counted expanded
        self._depth = 0
        self._sizes: dict[Node, int] = {}  # finished node -> its expanded node count
        self._heights: dict[Node, int] = {}

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:     # else the base class reports the undefined alias
                if node not in self._sizes:
                    raise _LimitError(None, None, f"alias *{event.anchor} is used inside the "
                                      f"node &{event.anchor} itself: a recipe cannot be "
                                      "recursive", event.start_mark)
                self._grow(self._sizes[node], self._depth + self._heights[node], event.start_mark)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._depth += 1
        before = self._nodes
        self._grow(1, self._depth, mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[node] = self._nodes - before
        children = (node.value if isinstance(node, SequenceNode) else
                    [child for pair in node.value for child in pair]
                    if isinstance(node, MappingNode) else [])
        self._heights[node] = 1 + max((self._heights[child] for child in children), default=0)
        return node

    def _grow(self, nodes: int, depth: int, mark) -> None:
        self._nodes += nodes
        if self._nodes > MAX_YAML_NODES:
            raise _LimitError(None, None, f"the document grows past {MAX_YAML_NODES:,} YAML nodes "
                              "(each use of an alias counts its whole node): a recipe has a few "
                              "hundred; use fewer aliases or a smaller document", mark)
        if depth > MAX_YAML_DEPTH:
            raise _LimitError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep (counting "
                              "through aliases): flatten the structure", mark)


class _StrictConstructor(SafeConstructor):
    """SafeConstructor that refuses what PyYAML lets through or turns into tracebacks: duplicate
    keys (silently keeping the last one hides typos), keys that are lists or mappings
    (unhashable: a TypeError), and values Python cannot build (`2023-02-30`, integers of
    thousands of digits: a ValueError); each becomes a ConstructorError with its line."""

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as error:
            reason = ("an integer of more than 4300 digits" if "integer string conversion"
                      in str(error) else str(error))
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {_shown(node)}: {reason}", node.start_mark) from None

    def construct_undefined(self, node):
        raise yaml.constructor.ConstructorError(
            None, None, f"the tag {node.tag!r} is not allowed: a recipe holds plain values "
            "(strings, numbers, true/false, null, lists and mappings); remove the tag",
            node.start_mark)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue             # `<<: *base`: merged keys may be overridden here
                if not isinstance(key_node, ScalarNode):
                    kind = "list" if isinstance(key_node, SequenceNode) else "mapping"
                    raise yaml.constructor.ConstructorError(
                        None, None, f"a {kind} used as a key: keys must be names such as "
                        "'workload'", key_node.start_mark)
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line "
                        f"{seen[key].line + 1}; the first value would be lost): keep one",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_StrictConstructor.add_constructor(None, _StrictConstructor.construct_undefined)


def _shown(node: Node) -> str:
    value = node.value if isinstance(node, ScalarNode) else type(node).__name__
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _PythonLoader(_BoundedComposer, Reader, Scanner, Parser, _StrictConstructor, Resolver):
    """SafeLoader's parts with the bounded composer and the strict constructor."""

    def __init__(self, text: str):
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        _StrictConstructor.__init__(self)
        Resolver.__init__(self)


if CParser is not None:
    class _LibyamlLoader(_BoundedComposer, CParser, _StrictConstructor, Resolver):
        """The same with libyaml's event parser (about four times faster on a 1 MiB
        document); the composer comes first, so the limits stay in Python."""

        def __init__(self, text: str):
            CParser.__init__(self, text)
            _BoundedComposer.__init__(self)
            _StrictConstructor.__init__(self)
            Resolver.__init__(self)

    _BoundedLoader: type = _LibyamlLoader
else:   # pragma: no cover - PyYAML built without libyaml
    _BoundedLoader = _PythonLoader
