"""Datasets (executor/datasets.py): synthetic lengths, ShareGPT, JSONL, the bundled prompt set."""
import json

import numpy as np
import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.executor.config import DatasetSpec, LengthSpec
from hpcbench.executor.datasets import load_dataset, sample_lengths


def test_synthetic_prompts_have_the_asked_word_count_and_output_length():
    spec = DatasetSpec(input_tokens=LengthSpec(mean=50), output_tokens=LengthSpec(mean=7))
    prompts = load_dataset(spec)
    # the simulator counts prompt tokens as words: the prompt is exactly 50 of them
    assert {len(p.text.split()) for p in prompts} == {50}
    assert {p.input_tokens for p in prompts} == {50} and {p.output_tokens for p in prompts} == {7}
    assert len({p.text for p in prompts}) == len(prompts)   # distinct: no prefix-cache hits


def test_synthetic_is_seeded_per_executor():
    spec = DatasetSpec(seed=3)
    assert load_dataset(spec)[0] == load_dataset(spec)[0]
    assert load_dataset(spec)[0] != load_dataset(spec, executor_index=1)[0]


@pytest.mark.parametrize("length, check", [
    (LengthSpec("fixed", mean=9), lambda v: set(v) == {9}),
    (LengthSpec("uniform", mean=0, min=10, max=20),
     lambda v: v.min() == 10 and v.max() == 20 and abs(v.mean() - 15) < 0.5),
    (LengthSpec("normal", mean=100, min=90, max=130, stddev=20),
     lambda v: v.min() == 90 and v.max() == 130 and abs(np.median(v) - 100) <= 2),
])
def test_length_distributions(length, check):
    values = sample_lengths(length, 5000, np.random.default_rng(0))
    assert values.dtype.kind == "i" and check(values)


def test_sharegpt_takes_the_first_human_turn_and_reply_length(tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "Why is the sky blue?"},
                           {"from": "gpt", "value": "x" * 400}]},
        {"conversations": [{"from": "human", "value": "only one turn"}]},
        {"id": "no conversations"},
    ]))
    prompts = load_dataset(DatasetSpec(kind="sharegpt", path=str(path), output_tokens=None))
    assert [(p.text, p.output_tokens) for p in prompts] == [("Why is the sky blue?", 100)]
    fixed = load_dataset(DatasetSpec(kind="sharegpt", path=str(path),
                                     output_tokens=LengthSpec(mean=5)))
    assert fixed[0].output_tokens == 5


def test_jsonl_prompts_with_optional_output_tokens(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "a b c", "output_tokens": 3}\n\n{"text": "d e"}\n')
    prompts = load_dataset(DatasetSpec(kind="jsonl", path=str(path), output_tokens=None))
    assert sorted((p.text, p.output_tokens) for p in prompts) == [("a b c", 3), ("d e", None)]


def test_bundled_prompt_set_ships_with_the_package():
    prompts = load_dataset(DatasetSpec(kind="bundled", output_tokens=LengthSpec(mean=32)))
    assert len(prompts) >= 30 and all(p.text.strip() and p.output_tokens == 32 for p in prompts)


@pytest.mark.parametrize("kind, content, message", [
    ("jsonl", '{"prompt": ""}\n', "line 1"),
    ("jsonl", "not json\n", "line 1"),
    ("jsonl", '{"prompt": "x", "output_tokens": 0}\n', "output_tokens"),
    ("jsonl", "", "no prompts"),
    ("sharegpt", "{broken", "not valid JSON"),
    ("sharegpt", '{"conversations": []}', "JSON list"),
    ("sharegpt", "[]", "no usable conversation"),
])
def test_bad_dataset_files_name_the_problem(tmp_path, kind, content, message):
    path = tmp_path / "data"
    path.write_text(content)
    with pytest.raises(HpcbenchError, match=message) as caught:
        load_dataset(DatasetSpec(kind=kind, path=str(path)))
    assert caught.value.code == "E006"


def test_missing_dataset_file_names_the_path(tmp_path):
    with pytest.raises(HpcbenchError, match="absent.jsonl"):
        load_dataset(DatasetSpec(kind="jsonl", path=str(tmp_path / "absent.jsonl")))


def test_shared_prefixes_start_the_asked_fractions_of_prompts_on_every_executor():
    from hpcbench.executor.config import SharedPrefixSpec
    from hpcbench.executor.datasets import SYNTHETIC_POOL, shared_prefixes
    spec = DatasetSpec(input_tokens=LengthSpec(mean=20), seed=5,
                       shared_prefix=SharedPrefixSpec(tokens=30, fractions=(0.5, 0.25)))
    first, second = shared_prefixes(spec)
    assert len(first.split()) == len(second.split()) == 30 and first != second
    for executor in (0, 1):
        prompts = load_dataset(spec, executor_index=executor)
        starts = [p.text[:len(first)] for p in prompts]
        assert starts.count(first) == SYNTHETIC_POOL // 2
        assert starts.count(second) == SYNTHETIC_POOL // 4
        assert {p.input_tokens for p in prompts} == {20, 50}
        # every prompt is the prefix (if any) plus its own suffix: no two are alike
        assert len({p.text for p in prompts}) == len(prompts)
        assert {len(p.text.split()) for p in prompts} == {20, 50}


def test_shared_prefix_keys_are_checked_with_the_field_and_the_fix():
    from hpcbench.executor.config import _dataset_spec
    with pytest.raises(HpcbenchError, match=r"shared_prefix.fractions.*add up to 1.5"):
        _dataset_spec({"shared_prefix": {"tokens": 8, "fractions": [1, 0.5]}})
    with pytest.raises(HpcbenchError, match=r"shared_prefix.count=0: expected an integer >= 1"):
        _dataset_spec({"shared_prefix": {"tokens": 8, "count": 0}})
    with pytest.raises(HpcbenchError, match=r"synthetic prompts only"):
        _dataset_spec({"kind": "bundled", "shared_prefix": {"tokens": 8, "count": 1}})
    even = _dataset_spec({"shared_prefix": {"tokens": 8, "count": 4}}).shared_prefix
    assert even.fractions == (0.25,) * 4
