"""Hostile inputs: every one is refused with E006 naming where (a line and column, a dotted path
or the value), quickly and within bounded memory, never with a traceback or a hang.

The corpus: YAML that expands (alias bombs, fan-out, recursion), nests, is huge, or is
malformed in the ways PyYAML turns into tracebacks (unhashable keys, impossible dates,
4000-digit integers); every numeric field of the schema at and beyond its maximum (found by
walking recipe.schema.json, so a field added later is covered); the executor's own flags; bad
session ids. "Quickly" is measured as work, not seconds: how many YAML nodes the composer built
and the peak of Python's allocations (tracemalloc) while the input was refused.
"""
from __future__ import annotations

import math
import re
import tracemalloc
from pathlib import Path

import pytest
from yaml.composer import Composer

from hpcbench.common import limits
from hpcbench.common.durations import parse_duration
from hpcbench.common.errors import HpcbenchError
from hpcbench.common.ids import ID_PATTERN, check_id, is_valid_id
from hpcbench.coordinator.session.lifecycle import new_session_id
from hpcbench.executor.cli import build_parser, workload_from_args
from hpcbench.executor.config import LoadConfig
from hpcbench.recipes import load_recipe, load_recipe_text, recipe_from_dict
from hpcbench.recipes.loader import validate
from hpcbench.recipes.problems import dotted
from hpcbench.recipes.schema import recipe_schema, schema_problems
from tests.support.faults import record

LOCATED = re.compile(r"line \d+, column \d+: ")
BASE = {"scenario": "hostile", "workload": {"service": "simulator", "model": "m"}}
BASE_TEXT = "scenario: hostile\nworkload: {service: simulator, model: m}\n"


class Work:
    """YAML nodes composed and peak bytes allocated while a call ran."""

    nodes = 0
    peak = 0


@pytest.fixture
def work(monkeypatch):
    """Count every node the composer builds (Composer.compose_node runs once per node it
    builds, aliases included) and trace allocations; yields the Work the test reads after."""
    measured = Work()
    original = Composer.compose_node

    def counting(self, parent, index):
        measured.nodes += 1
        return original(self, parent, index)

    monkeypatch.setattr(Composer, "compose_node", counting)
    tracemalloc.start()
    try:
        yield measured
    finally:
        measured.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


@pytest.fixture(params=["libyaml", "python"])
def parser(request, monkeypatch):
    """Each YAML case with libyaml's event parser (the default) and with PyYAML's own (what
    runs where PyYAML was built without libyaml): the limits live in the composer above both."""
    from hpcbench.recipes import loader

    if request.param == "python":
        monkeypatch.setattr(loader, "_BoundedLoader", loader._PythonLoader)
    elif loader.CParser is None:
        pytest.skip("PyYAML without libyaml")
    return request.param


def refused(load, *args) -> HpcbenchError:
    """The E006 `load(*args)` raises (anything else fails the test)."""
    record("bad_inputs")
    with pytest.raises(HpcbenchError) as caught:
        load(*args)
    error = caught.value
    assert error.code == "E006" and error.exit_status == 2, error.render()
    assert "Traceback" not in error.render()
    return error


def refused_text(tmp_path: Path, content: str | bytes) -> HpcbenchError:
    path = tmp_path / "hostile.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return refused(load_recipe, path)


# ---- YAML that expands ------------------------------------------------------------------------
def billion_laughs(levels: int = 9, fan: int = 9) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * fan)}]" for k in range(1, levels)]
    return BASE_TEXT + "metadata:\n" + "".join(f"  {line}\n" for line in lines)


EXPANDING = {
    # 9^9 = 387 million strings if expanded; refused after composing ~100 nodes
    "billion laughs": billion_laughs(),
    # one 1000-item list used 1000 times: a million nodes from 5 KB
    "fan-out": (BASE_TEXT + "metadata:\n  big: &big [" + ", ".join(["1"] * 1000) + "]\n"
                "  uses: [" + ", ".join(["*big"] * 1000) + "]\n"),
    # each level adds one use of the last: nesting grows through aliases
    "alias chain": (BASE_TEXT + "metadata:\n  a0: &a0 x\n"
                    + "".join(f"  a{k}: &a{k} [*a{k - 1}]\n" for k in range(1, 200))),
}


@pytest.mark.parametrize("name", sorted(EXPANDING))
def test_alias_expansion_is_refused_before_anything_expands(tmp_path, parser, work, name):
    error = refused_text(tmp_path, EXPANDING[name])
    detail = "\n".join(error.details)
    assert LOCATED.match(detail), detail
    assert "YAML nodes" in detail or "levels deep" in detail
    assert "beyond the limits" in error.message
    text_nodes = EXPANDING[name].count(",") + EXPANDING[name].count(":") + 10
    assert work.nodes <= text_nodes      # only what the text holds; never the expansion
    assert work.peak < 8 * 2**20         # bytes; the expanded tree would be gigabytes


@pytest.mark.parametrize("text, words", [
    ("scenario: &x [*x]\n", "recursive"),
    ("scenario: hostile\nworkload: &w {service: simulator, model: m, dataset: *w}\n",
     "recursive"),
])
def test_a_recursive_alias_is_refused(tmp_path, parser, work, text, words):
    error = refused_text(tmp_path, text)
    assert LOCATED.match(error.details[0]) and words in error.details[0]
    assert work.nodes < 20


def test_a_document_of_many_plain_nodes_stops_at_the_node_budget(tmp_path, monkeypatch):
    counted = []
    original = Composer.compose_node
    monkeypatch.setattr(Composer, "compose_node",
                        lambda self, parent, index: counted.append(1) or original(self, parent, index))
    text = BASE_TEXT + "metadata: [" + ",".join(["1"] * (limits.MAX_YAML_NODES + 1000)) + "]\n"
    assert len(text) < limits.MAX_RECIPE_BYTES
    error = refused_text(tmp_path, text)
    assert f"{limits.MAX_YAML_NODES:,} YAML nodes" in error.details[0]
    assert len(counted) <= limits.MAX_YAML_NODES + 1


# ---- nesting ----------------------------------------------------------------------------------
NESTED = {
    "flow 65": BASE_TEXT + "metadata: " + "[" * 65 + "]" * 65 + "\n",
    "flow 100000": BASE_TEXT + "metadata: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "block 80": BASE_TEXT + "metadata:\n" + "".join(" " * k + f"k{k}:\n" for k in range(1, 80))
    + " " * 80 + "leaf: 1\n",
    "mappings 5000": BASE_TEXT + "metadata: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_deep_nesting_is_refused_with_a_location(tmp_path, parser, work, name):
    error = refused_text(tmp_path, NESTED[name])
    assert LOCATED.match(error.details[0]) and "nest" in error.details[0], error.render()
    assert work.nodes <= 2 * limits.MAX_YAML_DEPTH + 10     # a key and a value per level


def test_64_levels_are_still_a_recipe(tmp_path):
    depth = limits.MAX_YAML_DEPTH - 2            # the document and metadata are two levels
    path = tmp_path / "deep.yaml"
    path.write_text(BASE_TEXT + "metadata: {a: " + "[" * depth + "]" * depth + "}\n")
    assert load_recipe(path).data["metadata"]["a"]
    path.write_text(BASE_TEXT + "metadata: {a: " + "[" * (depth + 1) + "]" * (depth + 1) + "}\n")
    assert "more than 64 levels" in refused(load_recipe, path).details[0]


# ---- size ---------------------------------------------------------------------------------------
def test_a_huge_recipe_is_refused_before_it_is_parsed(tmp_path, work):
    keys = "".join(f"  key{k}: {k}\n" for k in range(90_000))        # 1.5 MB of keys
    error = refused_text(tmp_path, BASE_TEXT + "metadata:\n" + keys)
    assert "too large" in error.message and "1,048,576 bytes" in error.message
    assert work.nodes == 0
    assert work.peak < 8 * 2**20     # the file as bytes (1 MiB read at most), nothing parsed


def test_an_endless_file_is_read_no_further_than_the_limit(work):
    error = refused(load_recipe, "/dev/zero")
    assert "too large" in error.message and work.nodes == 0 and work.peak < 8 * 2**20


def test_start_session_text_has_the_same_size_limit(work):
    text = BASE_TEXT + "metadata: {notes: '" + "x" * limits.MAX_RECIPE_BYTES + "'}\n"
    error = refused(load_recipe_text, text, "StartSession recipe_yaml")
    assert error.message.startswith("StartSession recipe_yaml is too large")
    assert work.nodes == 0


def test_a_recipe_just_under_the_limit_loads(tmp_path):
    notes = "x" * (limits.MAX_RECIPE_BYTES - 200)
    path = tmp_path / "big.yaml"
    path.write_text(BASE_TEXT + f"metadata: {{notes: '{notes}'}}\n")
    assert path.stat().st_size <= limits.MAX_RECIPE_BYTES
    assert load_recipe(path).data["metadata"]["notes"] == notes


# ---- malformed YAML ---------------------------------------------------------------------------
MALFORMED = [
    ("list key", BASE_TEXT + "? [a, b]\n: 1\n", "line 3, column 3", "list used as a key"),
    ("mapping key", BASE_TEXT + "metadata: {? {a: 1} : 1}\n", "line 3, column 14",
     "mapping used as a key"),
    ("set of lists", BASE_TEXT + "metadata: !!set {? [1]}\n", "line 3, column", "list used as a key"),
    ("duplicate key", BASE_TEXT + "scenario: other\n", "line 3, column 1",
     "duplicate key 'scenario' (first at line 1"),
    ("duplicate nested key", "scenario: s\nworkload:\n  service: simulator\n  model: m\n"
     "  service: vllm\n", "line 5, column 3", "duplicate key 'service'"),
    ("python object", BASE_TEXT + "metadata: !!python/object/apply:os.system [id]\n",
     "line 3, column 11", "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
    ("python name", BASE_TEXT + "metadata: !!python/name:os.system\n", "line 3, column 11",
     "is not allowed"),
    ("local tag", BASE_TEXT + "metadata: !custom 1\n", "line 3, column 11", "'!custom' is not allowed"),
    ("impossible date", BASE_TEXT + "metadata: {when: 2023-02-30}\n", "line 3, column 18",
     "day is out of range"),
    ("4000-digit integer", BASE_TEXT + "metadata: {n: " + "9" * 5000 + "}\n", "line 3, column 15",
     "more than 4300 digits"),
    ("bad base64", BASE_TEXT + "metadata: !!binary 'a'\n", "line 3, column 11", "base64"),
    ("bad merge", BASE_TEXT + "metadata: {<<: 1}\n", "line 3, column", "merging"),
    ("undefined alias", BASE_TEXT + "metadata: *nowhere\n", "line 3, column 11", "undefined alias"),
    ("two documents", BASE_TEXT + "---\nscenario: again\n", "line 3, column 1", "single document"),
    ("control character", BASE_TEXT + "metadata: {notes: \"a\x07b\"}\n", "line 3, column 21",
     "U+0007"),
    ("tab indentation", "scenario: s\nworkload:\n\tservice: simulator\n", "line 3, column 1",
     "cannot start any token"),
    ("unclosed flow", "scenario: [unclosed\n", "line 2, column 1", "expected ',' or ']'"),
]


@pytest.mark.parametrize("name, text, where, words", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_yaml_is_e006_with_line_and_column(tmp_path, parser, name, text, where, words):
    error = refused_text(tmp_path, text)
    detail = "\n".join(error.details)
    assert detail.startswith(where) and words in detail, error.render()


def test_non_utf8_bytes_are_e006_with_their_position(tmp_path):
    error = refused_text(tmp_path, BASE_TEXT.encode() + b"metadata: {notes: \"caf\xe9\"}\n")
    assert "not UTF-8" in error.message
    assert error.details[0].startswith("line 3, column 23: byte 0xe9"), error.details


def test_a_lone_surrogate_in_start_session_text_is_e006(parser):
    error = refused(load_recipe_text, BASE_TEXT + "metadata: {notes: \"a\ud800\"}\n", "text")
    assert error.details == ("line 3, column 21: U+D800 is a lone surrogate, not a character; "
                             "remove it",)


@pytest.mark.parametrize("text, shown", [
    ("- scenario: s\n- workload: {}\n", "got [{'scenario': 's'}, {'workload': {}}]"),
    ("just a sentence\n", "got 'just a sentence'"),
    ("42\n", "got 42"),
    ("", "got None"),
    ("# only a comment\n", "got None"),
])
def test_a_document_that_is_not_a_mapping_is_e006(tmp_path, text, shown):
    error = refused_text(tmp_path, text)
    assert error.details[0].startswith("(recipe): " + shown), error.details


@pytest.mark.parametrize("text, path", [
    (".nan", "workload.load.rate"), (".inf", "workload.load.rate"), ("-.inf", "workload.load.rate"),
])
def test_nan_and_infinity_are_e006_at_their_path(text, path):
    record("bad_inputs")
    data = load_recipe_text(BASE_TEXT, "base").data      # valid; now the same with a NaN rate
    assert data
    text = BASE_TEXT.replace("model: m}", f"model: m, load: {{pattern: constant, rate: {text}}}}}")
    error = refused(load_recipe_text, text, "nan recipe")
    assert any(line.startswith(f"{path}: got") for line in error.details), error.details


def test_a_huge_bad_value_is_shown_by_its_start_only():
    error = refused(recipe_from_dict, {**BASE, "scenario": "x" * 500_000})
    assert len(error.details[0]) < 400 and error.details[0].startswith("scenario: got 'xxx")


def test_nan_in_free_form_metadata_is_named_too():
    error = refused(recipe_from_dict, {**BASE, "metadata": {"weights": [1.0, math.nan]}})
    assert error.details == ("metadata.weights[1]: got nan; expected a finite number (.nan and "
                             ".inf are not numbers a recipe can use)",)


# ---- numbers: every numeric field of the schema ------------------------------------------------
def numeric_fields(schema: dict, path: tuple = (), seen_anyof: bool = False):
    """(path, schema node, whether the value sits in a list) of every numeric field, walking
    properties, $refs, anyOf branches, array items and open mappings (key 'ANY')."""
    definitions = recipe_schema()["$defs"]
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if {"integer", "number"} & set(types):
        yield path, schema, False
    for key, child in schema.get("properties", {}).items():
        yield from numeric_fields(child, (*path, key))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from numeric_fields(schema["additionalProperties"], (*path, "ANY"))
    for branch in schema.get("anyOf", []):
        yield from numeric_fields(branch, path)
    if isinstance(schema.get("items"), dict):
        for item_path, item, _ in numeric_fields(schema["items"], path):
            yield item_path, item, True


NUMERIC = sorted({(path, in_list): node for path, node, in_list in numeric_fields(recipe_schema())}
                 .items(), key=lambda entry: entry[0])


def test_the_walk_finds_every_numeric_field_we_know_of():
    paths = {dotted(path) for (path, _), _ in NUMERIC}
    assert len(NUMERIC) >= 45, paths
    for known in ("workload.concurrency", "workload.load.rate", "workload.duration",
                  "workload.dataset.input_tokens.mean", "repetitions", "monitoring.prometheus.port",
                  "servers.service_config.distributed.ray.num_gpus_per_node",
                  "servers.service_config.env.ANY", "metadata.seed", "resources.clients.mem_gb"):
        assert known in paths


@pytest.mark.parametrize("field", NUMERIC, ids=[dotted(p) + ("[]" if listed else "")
                                                 for (p, listed), _ in NUMERIC])
def test_every_number_has_a_maximum_and_says_why(field):
    (path, _), node = field
    if node.get("format") == "duration":     # parse_duration caps every duration
        assert "30 days" in node["x-expected"]
        return
    assert "maximum" in node or "exclusiveMaximum" in node, dotted(path)


def set_path(data: dict, path: tuple, value) -> dict:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


def fresh() -> dict:
    return {"scenario": "hostile", "workload": {"service": "simulator", "model": "m"}}


def too_big(node: dict) -> list:
    """Values beyond the field's bound: just past it, far past it, and the float extremes."""
    if node.get("format") == "duration":
        return [limits.MAX_DURATION_S + 1, 1e308, "1e308", "99999999h", "721h", "inf"]
    maximum = node.get("maximum", node.get("exclusiveMaximum"))
    beyond = [maximum + 1 if isinstance(maximum, int) else maximum * 1.5, 10**30, 1e308]
    return beyond if "number" in str(node.get("type")) else [v for v in beyond if isinstance(v, int)]


HUGE_CASES = [((path, listed), value) for (path, listed), node in NUMERIC for value in too_big(node)]


@pytest.mark.parametrize("field, value", HUGE_CASES,
                         ids=[f"{dotted(p)}{'[]' if listed else ''}={v!r}"[:80]
                              for (p, listed), v in HUGE_CASES])
def test_a_huge_number_at_every_numeric_path_is_e006_naming_it(field, value):
    path, listed = field
    path = tuple("HUGE" if part == "ANY" else part for part in path)
    data = set_path(fresh(), path, [1, value] if listed else value)
    error = refused(recipe_from_dict, data)
    assert any(line.startswith(f"{dotted(path)}: got ") and "expected" in line
               for line in error.details), error.details


@pytest.mark.parametrize("field", NUMERIC, ids=[dotted(p) + ("[]" if listed else "")
                                                 for (p, listed), _ in NUMERIC])
def test_the_maximum_itself_is_accepted_by_the_schema(field):
    (path, listed), node = field
    if node.get("format") == "duration":
        value = limits.MAX_DURATION_S
    else:
        value = node.get("maximum")
        if value is None:
            pytest.skip("exclusive maximum")
    path = tuple("HUGE" if part == "ANY" else part for part in path)
    data = set_path(fresh(), path, [value] if listed else value)
    assert [p for p in schema_problems(data) if p.path == dotted(path)] == []


# the schema writes the maxima out; common.limits is what the executor and the loader use
SCHEMA_LIMITS = [
    (("repetitions",), "maximum", limits.MAX_REPETITIONS),
    (("orchestration", "total_nodes"), "maximum", limits.MAX_NODES),
    (("orchestration", "node_allocation", "clients", "executors_per_node"), "maximum",
     limits.MAX_PER_NODE),
    (("orchestration", "node_allocation", "clients", "clients_per_node"), "maximum",
     limits.MAX_IN_FLIGHT),
    (("workload", "concurrency"), "maximum", limits.MAX_IN_FLIGHT),
    (("workload", "clients_per_node"), "maximum", limits.MAX_IN_FLIGHT),
    (("workload", "load", "burst_size"), "maximum", limits.MAX_IN_FLIGHT),
    (("workload", "load", "rate"), "maximum", limits.MAX_RATE),
    (("workload", "load", "rate"), "minimum", limits.MIN_RATE),
    (("workload", "load", "burstiness"), "maximum", limits.MAX_BURSTINESS),
    (("workload", "load", "burstiness"), "minimum", limits.MIN_BURSTINESS),
    (("workload", "max_requests"), "maximum", limits.MAX_REQUESTS),
    (("workload", "prompt_len"), "maximum", limits.MAX_TOKENS),
    (("workload", "max_tokens"), "maximum", limits.MAX_TOKENS),
    (("workload", "batch"), "maximum", limits.MAX_BATCH),
    (("workload", "dataset", "input_tokens", "max"), "maximum", limits.MAX_TOKENS),
    (("workload", "dataset", "output_tokens", "mean"), "maximum", limits.MAX_TOKENS),
    (("workload", "dataset", "output_tokens", "stddev"), "maximum", limits.MAX_TOKENS),
    (("workload", "dataset", "seed"), "maximum", limits.MAX_SEED),
    (("metadata", "seed"), "maximum", limits.MAX_SEED),
    (("resources", "servers", "gpus"), "maximum", limits.MAX_PER_NODE),
    (("resources", "servers", "cpus_per_task"), "maximum", limits.MAX_CPUS),
    (("resources", "servers", "mem_gb"), "maximum", limits.MAX_MEM_GB),
    (("servers", "service_config", "gpu_layers"), "maximum", limits.MAX_GPU_LAYERS),
    (("servers", "service_config", "max_model_len"), "maximum", limits.MAX_MODEL_LEN),
    (("servers", "service_config", "tensor_parallel_size"), "maximum", limits.MAX_PER_NODE),
    (("servers", "service_config", "env", "ANY"), "maximum", limits.MAX_ENV_NUMBER),
    (("monitoring", "prometheus", "port"), "maximum", limits.MAX_PORT),
]


@pytest.mark.parametrize("path, keyword, expected", SCHEMA_LIMITS,
                         ids=[f"{dotted(p)}.{k}" for p, k, _ in SCHEMA_LIMITS])
def test_the_schema_maxima_are_the_shared_limits(path, keyword, expected):
    nodes = [node for (found, _), node in NUMERIC if found == path]
    assert nodes, path
    assert all(node[keyword] == expected for node in nodes), nodes


def test_sweep_lists_are_bounded_and_so_is_the_whole_sweep():
    data = fresh()
    data["workload"]["concurrency"] = list(range(1, limits.MAX_SWEEP_VALUES + 2))
    error = refused(recipe_from_dict, data)
    assert any(line.startswith("workload.concurrency: got") for line in error.details)
    data = fresh()      # 100 x 100 x 2 repetitions = 20,000 trials
    data["workload"].update(concurrency=list(range(1, 101)), prompt_len=list(range(1, 101)))
    data["repetitions"] = 2
    error = refused(recipe_from_dict, data)
    assert len(error.details) == 1 and error.details[0].startswith("workload.concurrency: got [1, 2")
    assert error.details[0].endswith(
        "...; expected a sweep of at most 10,000 trials; this one has 20,000 (100 concurrency x "
        "100 prompt_len x 2 repetitions): sweep fewer values or split it into several recipes")
    data["repetitions"] = 1
    assert recipe_from_dict(data)


@pytest.mark.parametrize("text", ["1e308", "1e308s", "99999999999999h", "721h", "inf", "nan",
                                  "-1s", 1e308, float("inf"), float("nan"), 10**400])
def test_durations_beyond_30_days_or_not_finite_are_refused(text):
    record("bad_inputs")
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
    assert parse_duration("720h") == limits.MAX_DURATION_S


# ---- the executor's own flags and what a coordinator sends it --------------------------------
EXECUTOR_FLAGS = [
    (["--concurrency", str(limits.MAX_IN_FLIGHT + 1)], "workload.concurrency"),
    (["--concurrency", "1000000000"], "workload.concurrency"),
    (["--rate", "1e26"], "workload.load.rate"),
    (["--rate", "1e-300"], "workload.load.rate"),
    (["--rate", "nan"], "workload.load.rate"),
    (["--pattern", "gamma", "--rate", "5", "--burstiness", "1e-320"], "workload.load.burstiness"),
    (["--pattern", "burst", "--burst-size", "1000000000", "--burst-pause", "1s"],
     "workload.load.burst_size"),
    (["--duration", "1e308"], "workload.duration"),
    (["--duration", "1e308s"], "workload.duration"),
    (["--warmup", "999999h"], "workload.warmup"),
    (["--timeout", "1e300"], "workload.request_timeout"),
    (["--ramp-up", "31d"], "workload.load.ramp_up"),
    (["--max-requests", str(10**20)], "workload.max_requests"),
    (["--input-tokens", "1000000000"], "workload.dataset.input_tokens.mean"),
    (["--output-tokens", "1000000000"], "workload.dataset.output_tokens.mean"),
    (["--api", "openai-completions", "--batch", "100000"], "workload.batch"),
    (["--seed", str(2**64)], "workload.dataset.seed"),
    (["--seed", "-1"], "workload.dataset.seed"),
]


@pytest.mark.parametrize("flags, field", EXECUTOR_FLAGS, ids=[" ".join(f)[:60] for f, _ in EXECUTOR_FLAGS])
def test_the_executor_cli_applies_the_same_limits(flags, field):
    args = build_parser().parse_args(["--target", "http://127.0.0.1:9", "--model", "m", *flags])
    error = refused(LoadConfig.from_workload, workload_from_args(args), args.target)
    assert field in error.message, error.render()


@pytest.mark.parametrize("edit, field", [
    ({"max_tokens": limits.MAX_TOKENS + 1}, "workload.max_tokens"),
    ({"clients_per_node": limits.MAX_IN_FLIGHT + 1}, "workload.clients_per_node"),
    ({"executor_concurrency": 10**9}, "workload.executor_concurrency"),
    ({"dataset": {"input_tokens": {"distribution": "uniform", "min": 1, "max": 10**9}}},
     "workload.dataset.input_tokens"),
    ({"dataset": {"output_tokens": {"distribution": "normal", "mean": 10, "stddev": 1e300}}},
     "workload.dataset.output_tokens.stddev"),
])
def test_a_coordinator_sent_workload_gets_the_same_limits(edit, field):
    workload = {"api": "openai-chat", "model": "m", "duration": 10, **edit}
    error = refused(LoadConfig.from_workload, workload, "http://127.0.0.1:9")
    assert field in error.message, error.render()


def test_the_executor_accepts_the_limits_themselves():
    workload = {"api": "openai-chat", "model": "m", "duration": limits.MAX_DURATION_S,
                "warmup": limits.MAX_DURATION_S, "concurrency": limits.MAX_IN_FLIGHT,
                "max_requests": limits.MAX_REQUESTS,
                "dataset": {"seed": limits.MAX_SEED,
                            "input_tokens": {"distribution": "fixed", "mean": limits.MAX_TOKENS}}}
    config = LoadConfig.from_workload(workload, "http://127.0.0.1:9")
    assert config.concurrency == limits.MAX_IN_FLIGHT
    # the open loop's arithmetic at the extremes: every request count and nanosecond offset of
    # MAX_RATE over warmup + duration is exact in float64 (and so in int64)
    assert limits.MAX_RATE * 2 * limits.MAX_DURATION_S < 2**53
    assert 2 * limits.MAX_DURATION_S * 10**9 < 2**53
    open_loop = LoadConfig.from_workload({**workload, "load": {"pattern": "poisson",
                                                               "rate": limits.MAX_RATE}},
                                         "http://127.0.0.1:9", executor_index=0, executor_count=7)
    assert open_loop.load.rate == limits.MAX_RATE / 7 and math.isfinite(open_loop.load.phase_offset)


# ---- ids ----------------------------------------------------------------------------------------
BAD_IDS = ["../x", "../../x", "..", ".", "/tmp/x", "/", "a/b", "a\\b", "", "x" * 65, "a..b",
           ".hidden", "-rf", "_x", "a b", "a\x00b", "a\nb", "café", "a:b", "a*", "~", "$(id)",
           None, 5, ["a"]]
GOOD_IDS = ["s1", "a", "0", "20261206-141502-a1b2", "1234567", "a.b_c-d", "Run.2", "x" * 64]


@pytest.mark.parametrize("value", BAD_IDS, ids=[repr(v)[:20] for v in BAD_IDS])
def test_a_bad_session_id_is_e006_naming_it_and_the_form(value):
    error = refused(check_id, value, "session id")
    assert error.message.startswith(f"session id {value!r}"[:60])
    assert "letters, digits" in error.message and "without '..'" in error.message
    assert error.details and error.details[0].startswith("fix: ")


@pytest.mark.parametrize("value", GOOD_IDS)
def test_good_ids_pass(value):
    assert check_id(value) == value


def test_ids_hpcbench_makes_itself_have_the_form():
    assert all(is_valid_id(new_session_id()) for _ in range(20))


def test_scenario_names_use_the_same_form():
    pattern = recipe_schema()["properties"]["scenario"]["pattern"]
    assert pattern == ID_PATTERN
    for value in BAD_IDS:
        if isinstance(value, str):
            problems = validate({**BASE, "scenario": value})
            assert [p.path for p in problems] == ["scenario"], (value, problems)
    for value in GOOD_IDS:
        assert validate({**BASE, "scenario": value}) == []


RUN_ARGUMENTS = [
    (["--session", "../x"], "--session id '../x' is not allowed"),
    (["--session", "/tmp/hpcbench-escape"], "--session id '/tmp/hpcbench-escape' is not allowed"),
    (["--session", "a/b"], "--session id 'a/b' is not allowed"),
    (["--session", ".."], "--session id '..' is not allowed"),
    (["--port", "70000"], "--port 70000 is not a TCP port"),      # gRPC made it 4464
    (["--port", "-5"], "--port -5 is not a TCP port"),
    (["--executors", "100000"], "--executors 100000: need 1 to 1024"),
]


@pytest.mark.parametrize("arguments, words", RUN_ARGUMENTS, ids=[" ".join(a) for a, _ in RUN_ARGUMENTS])
def test_hpcbench_run_refuses_bad_arguments_before_writing_anything(tmp_path, capsys, monkeypatch,
                                                                    arguments, words):
    from hpcbench.coordinator.cli.main import main

    record("bad_inputs")
    recipe = tmp_path / "in" / "r.yaml"
    recipe.parent.mkdir()
    recipe.write_text(BASE_TEXT)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    status = main(["run", str(recipe), *arguments, "--results-dir", str(out / "results"),
                   "--no-live"])
    assert status == 2
    assert f"error E006: {words}" in capsys.readouterr().err
    assert list(out.iterdir()) == []
    assert not Path("/tmp/hpcbench-escape").exists()


CLI_NUMBERS = [
    (["plan", "recipes/examples/local-sim.yaml", "--nodes", "1000000000"],
     "--nodes 1000000000: need 1 to 100000 nodes"),       # one name was made for each
    (["sim", "--workers", "100000"], "--workers 100000: expected an integer from 1 to 1024"),
    (["watch", "--idle-timeout", "nan"], "--idle-timeout nan: expected seconds > 0"),
    (["watch", "--idle-timeout", "1e308"], "--idle-timeout 1e+308: expected seconds > 0"),
    (["watch", "--count", "-1"], "--count -1: expected 1 or more messages"),
]


@pytest.mark.parametrize("arguments, words", CLI_NUMBERS, ids=[" ".join(a[:3]) for a, _ in CLI_NUMBERS])
def test_other_verbs_bound_their_numbers(repo, capsys, monkeypatch, arguments, words):
    from hpcbench.coordinator.cli.main import main

    record("bad_inputs")
    monkeypatch.chdir(repo)
    assert main(arguments) == 2
    assert f"error E006: {words}" in capsys.readouterr().err


def test_run_sbatch_refuses_a_bad_job_id_before_asking_slurm():
    from hpcbench.coordinator.launch.slurm import Allocation

    error = refused(Allocation.from_environment, {"SLURM_JOB_ID": "../../x",
                                                  "SLURM_JOB_NODELIST": "node[1-2]", "PATH": ""})
    assert "SLURM_JOB_ID" in error.message and "'../../x'" in error.message


def test_status_stop_and_watch_refuse_a_bad_session_lookup(tmp_path):
    from hpcbench.coordinator.control.client import locate

    error = refused(locate, None, "../../etc", str(tmp_path))
    assert "--session id '../../etc'" in error.message
