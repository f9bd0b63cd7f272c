"""A real `hpcbench run` with recipe `security: {curve: true}`: simulator, executors, monitor
and coordinator as processes, every ZeroMQ socket of the session on CURVE.

The run must lose nothing to the encryption (the samples hold exactly what the simulator
served), the monitor's telemetry must arrive (it is republished on the bus), `hpcbench watch`
must follow the bus with the run directory's keys, and a plain-text subscriber on the same
bus must hear nothing at all.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import zmq

from hpcbench.common.curve import KEYS_FILE
from hpcbench.coordinator.control.client import ADDRESS_FILE
from hpcbench.coordinator.session.results import read_samples
from tests.support.sim_process import served_requests, sim_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")

CLI = [sys.executable, "-m", "hpcbench.coordinator.cli.main"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def curve_recipe(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "scenario": "curve", "orchestration": {"mode": "local"}, "endpoints": [url],
        "security": {"curve": True},
        "workload": {
            "service": "simulator", "model": "sim-model", "duration": "2s", "warmup": "0s",
            "request_timeout": "10s", "concurrency": [2], "load": {"pattern": "closed"},
            "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                        "output_tokens": {"distribution": "fixed", "mean": 8}}},
        "monitoring": {"interval": "200ms"},
    }))
    return path


def started(session_dir: Path) -> dict | None:
    """coordinator.json once the session has its bus (and so its keys)."""
    try:
        info = json.loads((session_dir / ADDRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("bus") and (session_dir / KEYS_FILE).exists() else None


def test_a_curve_run_loses_nothing_and_its_bus_is_closed_to_plain_subscribers(tmp_path):
    results = tmp_path / "results"
    session_dir = results / "curve" / "s"
    context = zmq.Context()
    plain = context.socket(zmq.SUB)
    plain.setsockopt(zmq.LINGER, 0)
    plain.setsockopt(zmq.SUBSCRIBE, b"")
    processes: list[subprocess.Popen] = []
    try:
        with sim_process(tmp_path) as url:
            run = subprocess.Popen(CLI + ["run", str(curve_recipe(tmp_path, url)),
                                          "--results-dir", str(results), "--session", "s",
                                          "--no-live", "--no-report"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=ENV)
            processes.append(run)
            info = wait_until(lambda: started(session_dir) or run.poll() is not None,
                              timeout=60, what="the session's bus")
            assert run.poll() is None, run.communicate()
            plain.connect(info["bus"])
            watch = subprocess.Popen(CLI + ["watch", "--run-dir", str(session_dir), "--json",
                                            "--topics", "event,summary,telemetry"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=ENV)
            processes.append(watch)
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, out + err
            served = served_requests(url)
            watched, watch_err = watch.communicate(timeout=60)
        assert watch.returncode == 0, watched + watch_err
        heard_in_plain_text = plain.poll(500)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
        plain.close(0)
        context.destroy(linger=0)

    keys = session_dir / KEYS_FILE
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600

    # nothing lost to the encryption: the samples hold every request the simulator served
    (trial_dir,) = [path for path in session_dir.iterdir() if (path / "trial.done").exists()]
    batches = list(read_samples(trial_dir / "samples.msgpack"))
    assert sum(batch.n for batch in batches) == served > 0
    summary = json.loads((trial_dir / "summary.json").read_text())
    assert summary["overall"]["error_total"] == 0

    # the keyed watcher followed the session to its end, telemetry included
    messages = [json.loads(line) for line in watched.splitlines() if line.startswith("{")]
    topics = {message["topic"] for message in messages}
    assert {"event", "summary", "telemetry"} <= topics, topics
    assert any(message["topic"] == "telemetry" and message["data"].get("node") == "localhost"
               for message in messages)
    events = [message["data"].get("event") for message in messages
              if message["topic"] == "event"]
    assert "session_end" in events and "monitors_silent" not in events, events

    # a subscriber without the keys never completed the handshake: not one message
    assert heard_in_plain_text == 0

    # no secret key in any file of the run but curve.keys (logs, summaries, reports), nor in
    # what the run and the watcher printed
    secrets = [value for name, value in json.loads(keys.read_text()).items() if "secret" in name]
    assert len(secrets) == 2
    for path in session_dir.rglob("*"):
        if path.is_file() and path != keys:
            text = path.read_bytes().decode("latin-1")
            assert not any(secret in text for secret in secrets), path
    assert not any(secret in out + err + watched + watch_err for secret in secrets)
