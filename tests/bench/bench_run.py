"""`hpcbench run` as a user meets it: time to the first request, and the tool's own overhead.

A one-trial recipe (simulator deployed by hpcbench, monitor on, 1 executor, 0.5 s warmup +
2 s measured) runs through the real CLI as a separate process, three times:
- time_to_first_request_s: from spawning `hpcbench run` to the earliest send time of any
  request in the raw samples (executor clock + its wall-clock epoch), so it covers recipe
  validation, service start and health check, monitor and executor start, registration.
- overhead_s: the command's whole wall time minus the trial's planned warmup + measured
  window: everything hpcbench adds around the measurement (start, drain, teardown, results).
  report.html is left out (--no-report): building it is `hpcbench report`'s cost, not the run's.
The median of the runs is reported.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hpcbench.coordinator.session.results import read_samples

RUNS = 3
WARMUP_S, DURATION_S = 0.5, 2.0
TARGETS = {"time_to_first_request_s": ("<=", 2.0), "overhead_s": ("<=", 3.0)}


def _recipe(path: Path) -> None:
    path.write_text(yaml.safe_dump({
        "scenario": "bench-run",
        "workload": {"service": "simulator", "model": "sim-model", "duration": DURATION_S,
                     "warmup": WARMUP_S, "concurrency": 4, "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 32},
                                 "output_tokens": {"distribution": "fixed", "mean": 16}}},
    }))


def _one_run(work: Path, index: int) -> tuple[float, float]:
    recipe = work / "recipe.yaml"
    _recipe(recipe)
    results = work / "results"
    started_wall = time.time_ns()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run", str(recipe),
                           "--results-dir", str(results), "--session", f"b{index}", "--no-live",
                           "--no-report"],
                          capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"hpcbench run failed ({done.returncode}): {done.stderr[-2000:]}")
    trial_dir = next(path for path in (results / "bench-run" / f"b{index}").iterdir()
                     if (path / "trial.done").exists())
    first_send = min(int(batch.columns["send_ns"].min()) + batch.epoch_ns
                     for batch in read_samples(trial_dir / "samples.msgpack") if batch.n)
    return (first_send - started_wall) / 1e9, wall - WARMUP_S - DURATION_S


def run() -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        measured = [_one_run(Path(scratch), index) for index in range(RUNS)]
    first, overhead = zip(*measured)
    return {"time_to_first_request_s": round(statistics.median(first), 3),
            "overhead_s": round(statistics.median(overhead), 3),
            "runs": RUNS, "time_to_first_request_all_s": [round(v, 3) for v in first],
            "overhead_all_s": [round(v, 3) for v in overhead]}


if __name__ == "__main__":
    print(run())
