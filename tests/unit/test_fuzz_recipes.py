"""Recipe fuzzing (hypothesis): whatever a user writes, the answer is a valid recipe or E006
with one `path: got ...; expected ...` line per problem, never a traceback.

The recipes engineer's property test (tests/unit/test_recipe_validation.py) replaces one workload
field; these go further: every path of every example recipe gets values of every YAML type
(including dates, binary and sets that SafeLoader builds), keys are deleted and added, the YAML
text itself is mutated, and structures are nested far deeper than any parser recursion limit.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcbench.common.errors import HpcbenchError
from hpcbench.recipes import expand_trials, load_recipe, recipe_from_dict
from tests.support.faults import record

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "examples").glob("*.yaml"))
EXAMPLE_TEXTS = {path.name: path.read_text() for path in EXAMPLES}
EXAMPLE_DATA = {name: yaml.safe_load(text) for name, text in EXAMPLE_TEXTS.items()}
PROBLEM_LINE = re.compile(r"^.*: got .+; expected .+", re.S)   # `path: got X; expected Y`
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.dates() | st.binary(max_size=16)
           | st.sampled_from(["10s", "1h", "-5s", "0", "1e400", "nan", "~", "round-robin",
                              "simulator", "slurm", "local", "$(id)", "a b", "[1, 2]"]))
values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=12) | st.integers(), children, max_size=4)
                      | st.frozensets(st.integers() | st.text(max_size=5), max_size=3)),
    max_leaves=12)


def paths_of(node, prefix=()):
    """Every (path tuple) inside a parsed recipe: mappings by key, lists by index."""
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from paths_of(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from paths_of(child, (*prefix, index))


ALL_PATHS = [(name, path) for name, data in EXAMPLE_DATA.items()
             for path in paths_of(data) if path]


def replaced(data, path, value, delete=False):
    data = yaml.safe_load(yaml.safe_dump(data))   # deep copy of plain YAML data
    node = data
    for step in path[:-1]:
        node = node[step]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


def assert_valid_or_clear_e006(data) -> None:
    """The property: a resolved recipe whose sweep expands, or E006 naming path and fix."""
    record("bad_inputs")
    try:
        recipe = recipe_from_dict(data)
    except HpcbenchError as error:
        assert error.code == "E006" and error.exit_status == 2
        assert error.details, error.render()
        for line in error.details:
            assert PROBLEM_LINE.match(line), line
        return
    trials = expand_trials(recipe)
    assert trials and len({trial.id for trial in trials}) == len(trials)


def test_every_example_is_valid_so_mutations_start_from_a_valid_recipe():
    for data in EXAMPLE_DATA.values():
        recipe_from_dict(data)


@FUZZ
@given(target=st.sampled_from(ALL_PATHS), value=values)
def test_any_value_at_any_path_is_valid_or_e006(target, value):
    name, path = target
    assert_valid_or_clear_e006(replaced(EXAMPLE_DATA[name], path, value))


@FUZZ
@given(target=st.sampled_from([(n, p) for n, p in ALL_PATHS if isinstance(p[-1], str)]))
def test_any_key_deleted_is_valid_or_e006(target):
    name, path = target
    assert_valid_or_clear_e006(replaced(EXAMPLE_DATA[name], path, None, delete=True))


@FUZZ
@given(name=st.sampled_from(sorted(EXAMPLE_DATA)), key=st.text(min_size=1, max_size=20),
       value=values, depth=st.integers(0, 2))
def test_unknown_keys_anywhere_are_valid_or_e006(name, key, value, depth):
    data = yaml.safe_load(yaml.safe_dump(EXAMPLE_DATA[name]))
    node = data
    for _ in range(depth):
        children = [child for child in node.values() if isinstance(child, dict)]
        if not children:
            break
        node = children[0]
    node[key] = value
    assert_valid_or_clear_e006(data)


@FUZZ
@given(document=values)
def test_any_document_is_valid_or_e006(document):
    assert_valid_or_clear_e006(document)


def load_text(tmp_path: Path, text: str):
    """load_recipe on a file with `text`: the Recipe, or the HpcbenchError it raised."""
    record("bad_inputs")
    path = tmp_path / "fuzzed.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return load_recipe(path)
    except HpcbenchError as error:
        assert error.code == "E006", error.render()
        return error


@FUZZ
@given(name=st.sampled_from(sorted(EXAMPLE_TEXTS)), data=st.data())
def test_mutated_yaml_text_is_valid_or_e006(tmp_path_factory, name, data):
    text = EXAMPLE_TEXTS[name]
    position = data.draw(st.integers(0, len(text)), label="position")
    cut = data.draw(st.integers(0, 40), label="cut")
    insert = data.draw(st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#%@`,? \n\t\\")
                                                      + ["a", "1", "\x00", "é", "\ufeff"]),
                               max_size=12), label="insert")
    result = load_text(tmp_path_factory.mktemp("yaml"), text[:position] + insert
                       + text[position + cut:])
    if isinstance(result, HpcbenchError):
        assert result.message and "Traceback" not in result.render()


@FUZZ
@given(text=st.text(max_size=200))
def test_arbitrary_text_is_valid_or_e006(tmp_path_factory, text):
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    load_text(tmp_path_factory.mktemp("yaml"), text)


def test_undecodable_bytes_are_e006(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"scenario: \xff\xfe\x00bad")
    with pytest.raises(HpcbenchError) as caught:
        load_recipe(path)
    assert caught.value.code == "E006" and str(path) in caught.value.message


def test_an_alias_bomb_and_a_self_reference_are_e006_quickly(tmp_path):
    levels = ["a: &a [1, 2]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]"
                                 for i in range(7)]
    result = load_text(tmp_path, "\n".join(levels) + "\nscenario: *h\n")
    # refused while composing (an alias counts its whole node), before anything walks the
    # expanded tree: tests/unit/test_fuzz_hostile_inputs.py bounds the work it may do
    assert isinstance(result, HpcbenchError) and "YAML nodes" in "\n".join(result.details)
    assert "line 6, column" in "\n".join(result.details)
    result = load_text(tmp_path, "scenario: &x [*x]\n")
    assert isinstance(result, HpcbenchError) and "recursive" in "\n".join(result.details)


@pytest.mark.parametrize("depth", [200, 5000])
def test_deeply_nested_yaml_is_e006_not_a_recursion_error(tmp_path, depth):
    result = load_text(tmp_path, "scenario: " + "[" * depth + "]" * depth + "\n")
    assert isinstance(result, HpcbenchError)
    # the composer stops at 64 levels (libyaml's scanner itself at 1000), with a line/column
    assert re.search(r"line 1, column \d+: .*nest", result.render()), result.render()


def test_deeply_nested_data_is_e006_not_a_recursion_error():
    nested: object = "x"
    for _ in range(5000):
        nested = {"k": [nested]}
    assert_valid_or_clear_e006({**EXAMPLE_DATA["local-sim.yaml"], "metadata": nested})
