"""Every server endpoint gets load: executors spread over a recipe's `endpoints:` by its
`distribution_strategy` (plan.assign_targets), checked against two real simulator processes'
own counts of the requests they served."""
import contextlib

import pytest
import yaml

from hpcbench.coordinator.results import read_samples
from tests.support.sim_process import served_requests, sim_process
from tests.test_run_e2e import hpcbench_run, trial_dirs


@pytest.mark.parametrize("strategy", ["round-robin", "all-to-all"])
def test_two_endpoints_both_serve_and_their_counts_sum_to_the_results(tmp_path, strategy):
    with contextlib.ExitStack() as stack:
        urls = []
        for name in ("sim-a", "sim-b"):
            (tmp_path / name).mkdir()
            urls.append(stack.enter_context(sim_process(tmp_path / name)))
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "scenario": "targets", "endpoints": urls,
            "orchestration": {"mode": "local", "node_allocation": {
                "clients": {"executors_per_node": 2, "distribution_strategy": strategy}}},
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
    batches = list(read_samples(trial_dir / "samples.msgpack"))
    assert all(count > 0 for count in served), served
    assert sum(served) == sum(batch.n for batch in batches)
