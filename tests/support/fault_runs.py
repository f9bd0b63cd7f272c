"""`hpcbench run` as a real process under faults: start it, wait for a phase, find and hurt its
components, and check what it left (finished trials, accounting, leftover processes).

Used by the fault suites (tests/integration/test_reliability_faults.py, test_reliability_lease.py).
The recipe is two short closed-loop trials against the simulator, so a test can wait until the
second one measures and know the first is finished on disk.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from hpcbench.coordinator.session.results import read_samples
from tests.support.faults import alive, descendants, record
from tests.support.waiting import wait_until


class HpcbenchRun:
    """`hpcbench run RECIPE` as a real process whose output a test can wait on and whose
    components (executors, monitor, service) it can find by name and hurt."""

    def __init__(self, recipe: Path, results: Path, session: str, *extra: str,
                 env: dict | None = None):
        self.results, self.session = Path(results), session
        self.output_path = Path(results).parent / f"run-{session}.out"
        self._output = open(self.output_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hpcbench.coordinator.cli.main", "run", str(recipe),
             "--results-dir", str(results), "--session", session, "--no-live", *extra],
            stdout=self._output, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def component_pid(self, *markers: str) -> int | None:
        """The pid of the running descendant whose command line contains one of `markers` or
        whose environment has one as an entry (e.g. HPCBENCH_AGENT_ID=executor-1)."""
        wanted = [marker.encode() for marker in markers]
        for pid in descendants(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"hpcbench.common.process_group" in command:
                continue                     # the launcher, before it execs the component
            if any(marker in command or marker in environment for marker in wanted):
                return pid
        return None

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hpcbench run did not end within {timeout}s:\n"
                                 + self.output[-3000:]) from None

    def close(self) -> None:
        """Kill what is left (the run and every component), whatever the test did."""
        leftovers = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._output.close()


@contextlib.contextmanager
def started_runs():
    """A starter of HpcbenchRun processes; every one is killed (with its components) after."""
    started: list[HpcbenchRun] = []

    def start(*args, **kwargs) -> HpcbenchRun:
        run = HpcbenchRun(*args, **kwargs)
        started.append(run)
        return run

    try:
        yield start
    finally:
        for run in started:
            run.close()


SECOND_TRIAL_MEASURED = re.compile(r"trial 2/\d+ .* measured")
# how a component is recognised: its argv or its environment (either way of passing the id)
EXECUTOR_0 = ("--agent-id executor-0", "HPCBENCH_AGENT_ID=executor-0")
EXECUTOR_1 = ("--agent-id executor-1", "HPCBENCH_AGENT_ID=executor-1")
MONITOR = ("--coordinator-telemetry",)


def write_recipe(tmp_path: Path, url: str | None = None, duration: str = "3s",
                 concurrency: tuple[int, ...] = (2, 4), **top) -> Path:
    data = {
        "scenario": "faults", "orchestration": {"mode": "local"},
        "workload": {
            "service": "simulator", "model": "sim-model", "duration": duration, "warmup": "0.5s",
            "request_timeout": "2s", "concurrency": list(concurrency),
            "load": {"pattern": "closed"},
            "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                        "output_tokens": {"distribution": "fixed", "mean": 8}},
            "error_threshold": 1.0,
        },
        "monitoring": {"interval": "500ms"}, **top,
    }
    if url:
        data["endpoints"] = [url]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def digest(directory: Path) -> dict[str, str]:
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def finished_trials(session_dir: Path) -> dict[str, Path]:
    return {path.name: path for path in session_dir.iterdir()
            if path.is_dir() and (path / "trial.done").exists()}


def wait_second_trial_measuring(run: HpcbenchRun) -> Path:
    """Block until trial 2 measures; return trial 1's directory (finished by then)."""
    wait_until(lambda: SECOND_TRIAL_MEASURED.search(run.output) or run.process.poll() is not None,
               timeout=90, what="the second trial's measured window")
    assert run.process.poll() is None, run.output
    session_dir = run.results / "faults" / run.session
    trials = finished_trials(session_dir)
    assert list(trials) == ["concurrency-2"], run.output
    return trials["concurrency-2"]


def assert_accounted(trial_dir: Path) -> dict:
    """Every request an executor says it produced (its own counter, in the trial's
    integrity.executor_reports) is a row on disk, and the rows on disk are the summary's
    request counts; no batch malformed or duplicated. Executors lost mid-trial sent no report:
    their rows are kept and the trial is flagged instead."""
    summary = json.loads((trial_dir / "summary.json").read_text())
    batches = list(read_samples(trial_dir / "samples.msgpack"))
    overall = summary["overall"]
    stored = sum(batch.n for batch in batches)
    assert stored == overall["requests"] + overall["warmup_requests"] + overall["drain_requests"]
    integrity = summary["integrity"]
    assert integrity["malformed_batches"] == 0 and integrity["duplicate_batches"] == 0
    rows = Counter()
    for batch in batches:
        rows[batch.executor] += batch.n
    reports = integrity["executor_reports"]
    assert reports, "no executor reported on the trial"
    for executor, report in reports.items():
        record("samples_produced", report["requests"])
        record("samples_accounted", rows[executor])
        assert rows[executor] == report["requests"], (executor, report, dict(rows))
    return summary


def component_pids(run: HpcbenchRun, *components: tuple[str, ...]) -> dict[tuple, int]:
    pids = {markers: run.component_pid(*markers) for markers in components}
    assert all(pids.values()), (pids, run.output)
    return pids


def assert_no_leftovers(pids) -> None:
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=15,
               what=f"components {sorted(pids)} to exit")
