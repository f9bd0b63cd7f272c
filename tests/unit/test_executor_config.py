"""LoadConfig.from_workload: one executor's share of a trial workload, and clear E006 errors."""
import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.executor.config import LoadConfig

URL = "http://127.0.0.1:8000"


def workload(**overrides):
    base = {"service": "simulator", "model": "m", "api": "openai-chat", "stream": True,
            "duration": "30s", "warmup": "5s", "max_requests": None, "request_timeout": 60,
            "clients_per_node": 4, "concurrency": None, "load": {"pattern": "closed"},
            "dataset": {"kind": "synthetic", "input_tokens": {"distribution": "fixed",
                                                              "mean": 64},
                        "output_tokens": {"distribution": "uniform", "min": 8, "max": 32},
                        "seed": 5},
            "slo": {"ttft": 0.5}, "error_threshold": 0.05}
    base.update(overrides)
    return base


def test_a_recipe_workload_resolves_with_durations_and_lengths():
    config = LoadConfig.from_workload(workload(), URL, run_id="r", trial_id="t",
                                      executor_id="e7", node="node3")
    assert (config.duration, config.warmup, config.request_timeout) == (30.0, 5.0, 60.0)
    assert config.concurrency == 4 and config.load.pattern == "closed"
    assert config.dataset.output_tokens.distribution == "uniform"
    assert config.dataset.output_tokens.mean == 20 and config.dataset.seed == 5
    assert (config.run_id, config.executor_id, config.node) == ("r", "e7", "node3")
    assert config.endpoints == [("127.0.0.1", 8000, "")] and config.slo == {"ttft": 0.5}


def test_total_concurrency_and_rate_are_split_between_executors():
    shares = [LoadConfig.from_workload(workload(concurrency=10), URL, index, 3).concurrency
              for index in range(3)]
    assert shares == [4, 3, 3]
    open_loop = [LoadConfig.from_workload(
        workload(load={"pattern": "poisson", "rate": 90}), URL, index, 3) for index in range(3)]
    assert {c.load.rate for c in open_loop} == {30.0}
    assert [c.concurrency for c in open_loop] == [0, 0, 0]
    burst = LoadConfig.from_workload(
        workload(load={"pattern": "burst", "burst_size": 5, "burst_pause": "2s"}), URL, 1, 2)
    assert (burst.load.burst_size, burst.load.burst_pause) == (2, 2.0)


def test_request_count_alone_is_enough_and_is_split():
    config = LoadConfig.from_workload(workload(duration=0, max_requests=7), URL, 0, 2)
    assert config.duration is None and config.max_requests == 4
    shares = [LoadConfig.from_workload(workload(duration=0, max_requests=2), URL, index, 3)
              .max_requests for index in range(3)]
    assert shares == [1, 1, 0]          # the total is kept exactly, even when tiny


def test_the_coordinators_explicit_share_wins_over_clients_per_node():
    """`hpcbench plan` splits clients_per_node over a node's executors
    (coordinator.plan.executor_concurrency); the session passes each executor its share."""
    from hpcbench.coordinator.launch.plan import executor_shares
    shares = executor_shares(4, 3)
    slots = [LoadConfig.from_workload(workload(executor_concurrency=share), URL, index, 3)
             .concurrency for index, share in enumerate(shares)]
    assert slots == shares == [2, 1, 1]
    assert LoadConfig.from_workload(workload(), URL, 1, 3).concurrency == 4   # no share given


def test_the_session_splits_clients_per_node_over_the_executors_of_each_node():
    from hpcbench.executor.config import with_executor_share
    nodes = {0: "n1", 1: "n2", 2: "n1", 3: "n1"}          # three executors on n1, one on n2
    slots = {index: LoadConfig.from_workload(with_executor_share(workload(), index, nodes),
                                             URL, index, 4).concurrency for index in nodes}
    assert slots == {0: 2, 2: 1, 3: 1, 1: 4}               # n1: 4 over 3; n2: all 4
    total = workload(concurrency=10)                       # a total is split by from_workload
    assert with_executor_share(total, 0, nodes) is total
    with pytest.raises(HpcbenchError, match="clients_per_node=1 is smaller than the 3 executors"):
        with_executor_share(workload(clients_per_node=1), 3, nodes)   # n1: 1, 0, 0
    # open loop has no slots to split: the default clients_per_node must not stop it
    open_loop = workload(clients_per_node=1, load={"pattern": "poisson", "rate": 4})
    assert with_executor_share(open_loop, 3, nodes) is open_loop


@pytest.mark.parametrize("overrides, message", [
    ({"api": "grpc"}, "workload.api 'grpc' is not a protocol installed where"),
    ({"model": None}, "workload.model is required"),
    ({"duration": "ten seconds"}, "workload.duration"),
    ({"duration": 0}, "set a duration"),
    ({"load": {"pattern": "poisson"}}, "workload.load.rate is required"),
    ({"load": {"pattern": "poisson", "rate": -1}}, "workload.load.rate=-1"),
    ({"load": {"pattern": "burst", "burst_size": 3}}, "burst_pause is required"),
    ({"load": {"pattern": "zigzag"}}, "workload.load.pattern='zigzag'"),
    ({"concurrency": 0}, "workload.concurrency=0"),
    ({"stream": "yes"}, "workload.stream='yes'"),
    ({"request_timeout": 0}, "must be > 0"),
    ({"dataset": {"kind": "jsonl"}}, "workload.dataset.path is required"),
    ({"dataset": {"input_tokens": {"distribution": "normal", "mean": 9}}}, "needs stddev"),
    ({"dataset": {"input_tokens": {"distribution": "uniform", "min": 9, "max": 3}}},
     "max=3 < min=9"),
    ({"load": "closed"}, "workload.load must be a mapping"),
    ({"batch": 4}, "workload.batch=4 needs api: openai-completions"),
    ({"max_tokens": 0}, "workload.max_tokens=0"),
    ({"executor_concurrency": 0}, "workload.executor_concurrency=0"),
])
def test_bad_workloads_name_the_field(overrides, message):
    with pytest.raises(HpcbenchError, match=message) as caught:
        LoadConfig.from_workload(workload(**overrides), URL)
    assert caught.value.code == "E006"


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "https://host:1", "http://:80",
                                 "http://host:99999", None])
def test_bad_target_urls_are_rejected(url):
    with pytest.raises(HpcbenchError, match="target URL"):
        LoadConfig.from_workload(workload(), url)


def test_concurrency_below_executor_count_is_explained():
    with pytest.raises(HpcbenchError, match="smaller than the 3 executors"):
        LoadConfig.from_workload(workload(concurrency=2), URL, 2, 3)


def test_every_trial_of_every_example_recipe_resolves(repo):
    """The recipe loader's resolved trial workloads are what from_workload receives."""
    from hpcbench.recipes.loader import load_recipe
    from hpcbench.recipes.sweep import expand_trials

    checked = 0
    for path in sorted((repo / "recipes" / "examples").glob("*.yaml")):
        for trial in expand_trials(load_recipe(path)):
            config = LoadConfig.from_workload(trial.workload, URL, 0, 2, trial_id=trial.id)
            assert config.model == trial.workload["model"] and config.trial_id == trial.id
            if trial.params.get("prompt_len"):
                assert config.dataset.input_tokens.mean == trial.params["prompt_len"]
            if trial.params.get("batch"):
                assert config.batch == trial.params["batch"]
            checked += 1
    assert checked >= 6
