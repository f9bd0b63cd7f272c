"""`hpcbench run` end to end: simulator, executors, monitor and coordinator as real processes.

The simulator runs as a separate process the test owns (recipe `endpoints:`), so after the
run the test can compare the results with the simulator's own count of served requests.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcbench.coordinator.session.results import NODE_SAMPLES, read_samples
from tests.support.sim_process import served_requests, sim_process


def recipe(tmp_path: Path, url: str | None, **overrides) -> Path:
    data = {
        "scenario": "e2e-sim",
        "orchestration": {"mode": "local"},
        "workload": {
            "service": "simulator", "model": "sim-model", "duration": "1.5s", "warmup": "0.5s",
            "request_timeout": "10s", "concurrency": [2, 4], "load": {"pattern": "closed"},
            "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                        "output_tokens": {"distribution": "fixed", "mean": 8}},
        },
        "monitoring": {"interval": "500ms"},
    }
    if url:
        data["endpoints"] = [url]
    for key, value in overrides.items():
        data[key] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def hpcbench_run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run", *args,
                           "--no-live", "--no-report"], capture_output=True, text=True,
                          timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def trial_dirs(session_dir: Path) -> dict[str, Path]:
    return {path.name: path for path in session_dir.iterdir() if (path / "trial.done").exists()}


def assert_rows_and_percentiles(summary: dict, batches: list) -> None:
    """The trial's stored rows are its requests of every phase, and its HDR percentiles are
    within 0.1 % of the exact ones recomputed from those raw samples."""
    overall = summary["overall"]
    assert sum(batch.n for batch in batches) == (overall["requests"]
                                                 + overall["warmup_requests"]
                                                 + overall["drain_requests"])
    for metric in ("ttft", "itl", "e2e"):
        hdr, exact = overall["latency"][metric], summary["exact"][metric]
        assert hdr["count"] == exact["count"] > 0
        for key in ("p50", "p90", "p99", "max"):
            assert hdr[key] == pytest.approx(exact[key], rel=1e-3), (metric, key)


def test_run_results_match_the_simulator_and_a_rerun_resumes(tmp_path):
    results = tmp_path / "results"
    with sim_process(tmp_path) as url:
        path = recipe(tmp_path, url)
        done = hpcbench_run(str(path), "--results-dir", str(results), "--session", "s1",
                            "--executors", "2")
        assert done.returncode == 0, done.stdout + done.stderr
        served = served_requests(url)
    session_dir = results / "e2e-sim" / "s1"
    trials = trial_dirs(session_dir)
    assert len(trials) == 2

    # every request the simulator served is in the raw samples, exactly once
    rows = 0
    for trial_dir in trials.values():
        batches = list(read_samples(trial_dir / "samples.msgpack"))
        assert {batch.executor for batch in batches} == {"executor-0", "executor-1"}
        rows += sum(batch.n for batch in batches)
        summary = json.loads((trial_dir / "summary.json").read_text())
        overall = summary["overall"]
        assert overall["requests"] > 0 and overall["error_total"] == 0
        assert_rows_and_percentiles(summary, batches)
        integrity = summary["integrity"]
        assert integrity["missing_batches"] == integrity["duplicate_batches"] == 0
        assert {report["kernel_stamps"] for report in integrity["executor_reports"].values()} \
            == {True}
        assert (trial_dir / "logs" / "executor-0.log").exists()
    assert rows == served

    # the CLI printed live progress and the summary table
    assert "running | trial 1/2" in done.stdout
    assert "TTFT p50" in done.stdout and "completed: 2 trial(s) run" in done.stdout
    assert (session_dir / "logs" / "monitor-localhost.log").exists()
    ended = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "status",
                            "--run-dir", str(session_dir)], capture_output=True, text=True)
    assert "ended, completed" in ended.stdout, ended.stderr
    assert (session_dir / "telemetry" / "localhost.csv").exists()

    # resume: a trial without trial.done runs again, the finished one is skipped untouched
    first, second = sorted(trials.values())
    kept = (first / "summary.json").stat()
    (second / "trial.done").unlink()
    (tmp_path / "again").mkdir()
    with sim_process(tmp_path / "again") as url:
        again = hpcbench_run(str(recipe(tmp_path, url)), "--results-dir", str(results),
                             "--session", "s1")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "1 trial(s) run, 1 skipped" in again.stdout
        assert "ok *" in again.stdout     # the whole sweep is summarised, earlier trial marked
        assert served_requests(url) > 0
    assert (first / "summary.json").stat().st_mtime_ns == kept.st_mtime_ns
    assert (second / "trial.done").exists()
    record = json.loads((session_dir / "session.json").read_text())
    assert [(t["trial_id"], t["earlier_run"], t["passed"]) for t in record["trials"]] == [
        (first.name, True, True), (second.name, False, True)]
    assert record["server_version"] not in (None, "unknown")

    # a run with nothing left to measure deploys no server, and keeps the recorded version
    rerun = hpcbench_run(str(recipe(tmp_path, url)), "--results-dir", str(results),
                         "--session", "s1")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "0 trial(s) run, 2 skipped" in rerun.stdout
    assert json.loads((session_dir / "session.json").read_text())["server_version"] == \
        record["server_version"]


def test_histogram_mode_keeps_every_served_request_and_its_statistics(tmp_path):
    """aggregation.mode histograms (docs/scale.md): executors send summaries and keep their
    rows in node files that the trial's end gathers; the results hold every request the
    simulator served exactly once, and live statistics agree with the exact ones."""
    results = tmp_path / "results"
    with sim_process(tmp_path) as url:
        path = recipe(tmp_path, url, aggregation={"mode": "histograms"})
        done = hpcbench_run(str(path), "--results-dir", str(results), "--session", "s1",
                            "--executors", "2")
        assert done.returncode == 0, done.stdout + done.stderr
        served = served_requests(url)
    rows = stored_batches = sent_batches = 0
    for trial_dir in trial_dirs(results / "e2e-sim" / "s1").values():
        summary = json.loads((trial_dir / "summary.json").read_text())
        assert summary["aggregation"] == {"mode": "histograms", "reason": "set by the recipe"}
        assert not (trial_dir / NODE_SAMPLES).exists()
        batches = list(read_samples(trial_dir / "samples.msgpack"))
        assert {batch.executor for batch in batches} == {"executor-0", "executor-1"}
        rows += sum(batch.n for batch in batches)
        stored_batches += len(batches)
        integrity = summary["integrity"]
        # the session's counters: every batch that arrived was a summary
        assert integrity["summary_batches"] == integrity["batches"]
        sent_batches = max(sent_batches, integrity["batches"])
        assert integrity["unstored_batches"] == integrity["missing_batches"] == 0
        assert_rows_and_percentiles(summary, batches)
    assert rows == served
    assert stored_batches == sent_batches      # each summarised batch's rows gathered once


def test_a_bad_recipe_exits_2_naming_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("scenario: x\nworkload: {service: simulator, model: m, duration: soon}\n")
    done = hpcbench_run(str(path), "--results-dir", str(tmp_path))
    assert done.returncode == 2
    assert "E006" in done.stderr and "workload.duration" in done.stderr


def test_a_slurm_recipe_is_sent_to_the_cluster(tmp_path):
    path = recipe(tmp_path, None, orchestration={"mode": "slurm"}, partition="gpu",
                  account="p1")
    done = hpcbench_run(str(path), "--results-dir", str(tmp_path / "results"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "orchestration.mode is 'slurm'" in done.stderr and "hpcbench submit" in done.stderr
    assert not (tmp_path / "results").exists()


def test_an_unreachable_service_fails_the_health_check_with_E001(tmp_path):
    from tests.support.ports import free_port

    path = recipe(tmp_path, f"http://127.0.0.1:{free_port()}",
                  servers={"health_check": {"timeout": "1s", "interval": "200ms"}})
    done = hpcbench_run(str(path), "--results-dir", str(tmp_path / "results"))
    assert done.returncode == 11, done.stdout + done.stderr
    assert "error E001" in done.stderr
    session_dir = next((tmp_path / "results" / "e2e-sim").iterdir())
    record = json.loads((session_dir / "session.json").read_text())
    assert record["state"] == "FAILED" and "E001" in record["error"]


def test_a_service_that_dies_at_start_fails_fast_with_its_log(tmp_path):
    # a port someone else holds: valid in the recipe, fatal when the simulator starts
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        path = recipe(tmp_path, None, servers={
            "service_config": {"port": holder.getsockname()[1]},
            "health_check": {"timeout": "5m"}})
        done = hpcbench_run(str(path), "--results-dir", str(tmp_path / "results"))
    assert done.returncode == 11, done.stdout + done.stderr
    assert "error E001: service exited with status" in done.stderr
    assert "Address already in use" in done.stderr      # the tail of the service's own log
    record = json.loads(next((tmp_path / "results" / "e2e-sim").glob("*/session.json"))
                        .read_text())
    states = [phase["state"] for phase in record["phases"]]
    assert states[states.index("TEARDOWN") - 1] == "PREPARING"   # failed there, not after 5 min


def test_a_session_being_run_cannot_be_run_twice(tmp_path):
    session_dir = tmp_path / "results" / "e2e-sim" / "busy"
    session_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        (session_dir / "coordinator.json").write_text(json.dumps({"pid": holder.pid}))
        done = hpcbench_run(str(recipe(tmp_path, None)), "--results-dir",
                            str(tmp_path / "results"), "--session", "busy")
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2 and f"being run by process {holder.pid}" in done.stderr


def test_a_server_program_that_is_not_installed_is_e001_naming_it(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "scenario": "missing", "monitoring": {"enabled": False},
        "servers": {"service_config": {"python": str(tmp_path / "no-such-python"),
                                       "model_path": str(tmp_path / "tiny.gguf")}},
        "workload": {"service": "llamacpp", "model": "m", "duration": "1s",
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                 "output_tokens": {"distribution": "fixed", "mean": 4}}},
    }))
    (tmp_path / "tiny.gguf").write_bytes(b"")
    done = hpcbench_run(str(recipe), "--results-dir", str(tmp_path / "results"))
    output = done.stdout + done.stderr
    assert done.returncode == 11, output                      # E001's exit status
    assert "error E001: cannot start service" in output and "no-such-python" in output
    assert "Traceback" not in output and "internal error" not in output
