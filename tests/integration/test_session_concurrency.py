"""`clients_per_node` is per node: with several executors on a node each runs its share, so
the load a run generates is the load `hpcbench plan` shows (not executors × clients_per_node)."""
import yaml

from hpcbench.coordinator.session.results import read_samples
from tests.integration.test_run_e2e import hpcbench_run, trial_dirs
from tests.support.sim_process import sim_process


def test_two_executors_on_a_node_split_its_clients(tmp_path):
    with sim_process(tmp_path) as url:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "scenario": "share", "endpoints": [url],
            "orchestration": {"mode": "local", "node_allocation": {
                "clients": {"executors_per_node": 2, "clients_per_node": 4}}},
            "monitoring": {"enabled": False},
            "workload": {"service": "simulator", "model": "sim-model", "duration": "1s",
                         "warmup": "0s", "request_timeout": "10s", "clients_per_node": 4,
                         "load": {"pattern": "closed"},
                         "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                     "output_tokens": {"distribution": "fixed", "mean": 4}}},
        }))
        done = hpcbench_run(str(recipe), "--results-dir", str(tmp_path / "results"),
                            "--session", "s1")
        assert done.returncode == 0, done.stdout + done.stderr
    (trial_dir,) = trial_dirs(tmp_path / "results" / "share" / "s1").values()
    slots: dict[str, set[int]] = {}
    for batch in read_samples(trial_dir / "samples.msgpack"):
        slots.setdefault(batch.executor, set()).update(batch.columns["slot"].tolist())
    assert len(slots) == 2, slots
    assert all(used == {0, 1} for used in slots.values()), slots
