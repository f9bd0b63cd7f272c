"""Batched OpenAI completions through a real `hpcbench run` of the example sweep against a
simulator process (the batching itself is checked in process by
tests/unit/test_simulator_batch.py)."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

from hpcbench.coordinator.session.results import read_samples
from tests.support.sim_process import served_requests, sim_process

SWEEP = Path(__file__).resolve().parents[2] / "recipes" / "examples" / "sweep.yaml"


def test_hpcbench_run_of_the_sweep_with_batch_4_has_no_errors(tmp_path):
    """The example sweep's batched trials: every request answered, none an error."""
    recipe = yaml.safe_load(SWEEP.read_text())
    recipe["workload"].update(batch=4, concurrency=4, prompt_len=32, output_len=8,
                              duration="1s", warmup="0.3s", model="sim-model")
    results = tmp_path / "results"
    with sim_process(tmp_path, "--mode", "fixed", "--ttft-ms", "2", "--itl-ms", "1") as url:
        recipe["endpoints"] = [url]
        path = tmp_path / "sweep-batch4.yaml"
        path.write_text(yaml.safe_dump(recipe))
        done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run",
                               str(path), "--results-dir", str(results), "--session", "b4",
                               "--no-live", "--no-report"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        served = served_requests(url)
    [trial_dir] = [p for p in (results / "sweep" / "b4").iterdir() if (p / "trial.done").exists()]
    summary = json.loads((trial_dir / "summary.json").read_text())
    assert summary["overall"]["requests"] > 0
    assert summary["overall"]["error_total"] == 0, summary["overall"]
    rows = sum(batch.n for batch in read_samples(trial_dir / "samples.msgpack"))
    assert rows == served     # one row per HTTP request, one served count per HTTP request
