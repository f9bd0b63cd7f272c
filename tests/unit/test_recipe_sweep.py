"""Sweep expansion: cross-product counts, stable readable ids, repetitions, substituted workloads."""
import pytest

from hpcbench.recipes import expand_trials, load_recipe, recipe_from_dict, trial_id


def recipe(**workload):
    return recipe_from_dict({"scenario": "s", "workload": {
        "service": "simulator", "model": "m", "api": "openai-completions", **workload}})


def test_seed_sweep_is_18_trials_in_cross_product_order(repo):
    trials = expand_trials(load_recipe(repo / "recipes/examples/sweep.yaml"))
    assert len(trials) == 18
    assert [trial.index for trial in trials] == list(range(18))
    combos = {(t.params["batch"], t.params["concurrency"], t.params["prompt_len"]) for t in trials}
    assert combos == {(b, c, p) for b in (1, 4, 8) for c in (1, 8, 32) for p in (128, 512)}
    assert trials[0].id == "batch-1_concurrency-1_prompt_len-128"
    assert trials[1].id == "batch-1_concurrency-1_prompt_len-512"
    assert len({trial.id for trial in trials}) == 18


def test_ids_do_not_depend_on_key_order():
    forward = expand_trials(recipe(concurrency=[1, 8], prompt_len=[128, 512]))
    backward = expand_trials(recipe(prompt_len=[128, 512], concurrency=[1, 8]))
    assert [t.id for t in forward] == [t.id for t in backward]
    assert trial_id({"prompt_len": 128, "concurrency": 8}) == "concurrency-8_prompt_len-128"


def test_ids_are_stable_across_runs():
    assert [t.id for t in expand_trials(recipe(concurrency=[2, 4]))] == \
        [t.id for t in expand_trials(recipe(concurrency=[2, 4]))] == ["concurrency-2", "concurrency-4"]


def test_no_sweep_is_one_default_trial():
    [trial] = expand_trials(recipe(concurrency=4))
    assert trial.id == "default" and trial.params == {} and trial.repetition == 1
    assert trial.workload["concurrency"] == 4


def test_repetitions_multiply_trials_and_mark_ids():
    data = {"scenario": "s", "repetitions": 3,
            "workload": {"service": "simulator", "model": "m", "concurrency": [1, 4]}}
    trials = expand_trials(recipe_from_dict(data))
    assert len(trials) == 6
    assert [t.repetition for t in trials] == [1, 1, 2, 2, 3, 3]
    assert trials[0].id == "concurrency-1_rep-1" and trials[5].id == "concurrency-4_rep-3"
    assert len({t.id for t in trials}) == 6


def test_swept_values_are_substituted_and_token_lengths_follow():
    trials = expand_trials(recipe(prompt_len=[64, 256], output_len=32, batch=[1, 2]))
    assert len(trials) == 4
    for trial in trials:
        workload = trial.workload
        assert workload["prompt_len"] == trial.params["prompt_len"]
        assert workload["batch"] == trial.params["batch"]
        assert workload["dataset"]["input_tokens"] == {"distribution": "fixed",
                                                       "mean": trial.params["prompt_len"]}
        assert workload["dataset"]["output_tokens"] == {"distribution": "fixed", "mean": 32}
        assert not any(isinstance(value, list) for value in workload.values())


def test_nested_rate_axis_and_float_ids():
    data = {"scenario": "s", "workload": {"service": "simulator", "model": "m", "duration": "1m",
                                          "load": {"pattern": "poisson", "rate": [5, 12.5, 20.0]}}}
    trials = expand_trials(recipe_from_dict(data))
    assert [t.id for t in trials] == ["load.rate-5", "load.rate-12.5", "load.rate-20"]
    assert [t.workload["load"]["rate"] for t in trials] == [5, 12.5, 20.0]
    assert all(t.workload["duration"] == 60.0 for t in trials)


def test_trial_workloads_are_independent_copies():
    trials = expand_trials(recipe(concurrency=[1, 2]))
    trials[0].workload["dataset"]["seed"] = 999
    assert trials[1].workload["dataset"]["seed"] != 999


@pytest.mark.parametrize("axes, count", [({"concurrency": [1, 2, 3]}, 3),
                                         ({"concurrency": [1, 2], "clients_per_node": [1, 2]}, 4),
                                         ({"max_tokens": [8, 16], "output_len": [8, 16, 32]}, 6)])
def test_counts_are_products(axes, count):
    assert len(expand_trials(recipe(**axes))) == count
