"""Every server endpoint gets load: executors spread over a recipe's `endpoints:` by its
`distribution_strategy` (plan.assign_targets), checked against real simulator processes' own
counts of the requests they served."""
import contextlib

import pytest
import yaml

from hpcbench.coordinator.session.results import read_samples
from tests.integration.test_run_e2e import hpcbench_run, trial_dirs
from tests.support.sim_process import served_requests, sim_process


def run_over_two_endpoints(tmp_path, strategy: str, executors: int) -> tuple[list[int], int]:
    """`hpcbench run` of one closed-loop trial against two simulators; returns what each
    simulator served and how many requests the results hold."""
    with contextlib.ExitStack() as stack:
        urls = []
        for name in ("sim-a", "sim-b"):
            (tmp_path / name).mkdir()
            urls.append(stack.enter_context(sim_process(tmp_path / name)))
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "scenario": "targets", "endpoints": urls,
            "orchestration": {"mode": "local", "node_allocation": {
                "clients": {"executors_per_node": executors,
                            "distribution_strategy": strategy}}},
            "monitoring": {"enabled": False},
            "workload": {"service": "simulator", "model": "sim-model", "duration": "1s",
                         "warmup": "0s", "request_timeout": "10s", "concurrency": 2,
                         "load": {"pattern": "closed"},
                         "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                     "output_tokens": {"distribution": "fixed", "mean": 4}}},
        }))
        done = hpcbench_run(str(recipe), "--results-dir", str(tmp_path / "results"),
                            "--session", "s1")
        assert done.returncode == 0, done.stdout + done.stderr
        served = [served_requests(url) for url in urls]
    (trial_dir,) = trial_dirs(tmp_path / "results" / "targets" / "s1").values()
    stored = sum(batch.n for batch in read_samples(trial_dir / "samples.msgpack"))
    return served, stored


@pytest.mark.parametrize("strategy", ["round-robin", "all-to-all"])
def test_two_endpoints_both_serve_and_their_counts_sum_to_the_results(tmp_path, strategy):
    served, stored = run_over_two_endpoints(tmp_path, strategy, executors=2)
    assert all(count > 0 for count in served), served
    assert sum(served) == stored


def test_all_to_all_spreads_one_executors_requests_over_every_endpoint(tmp_path):
    """One executor, two endpoints: its requests take them in turn (request k → endpoint
    k mod 2), so the two counts differ by at most one; round-robin would load only one."""
    served, stored = run_over_two_endpoints(tmp_path, "all-to-all", executors=1)
    assert min(served) > 0 and abs(served[0] - served[1]) <= 1, served
    assert sum(served) == stored
