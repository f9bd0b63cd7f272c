"""Recipe keys that were accepted and ignored, in real `hpcbench run` sessions: the simulator's
service_config port and env, the reference's `dummy` service, and the health check's endpoint
and retries (against a real HTTP server that counts what it is asked)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from tests.support.ports import free_port


def run(tmp_path: Path, **recipe) -> tuple[subprocess.CompletedProcess, Path]:
    data = {"scenario": "keys", "orchestration": {"mode": "local"},
            "workload": {"service": "simulator", "model": "sim-llama", "duration": "1s",
                         "warmup": 0, "concurrency": 2,
                         "dataset": {"output_tokens": {"distribution": "fixed", "mean": 4}}},
            "monitoring": {"enabled": False}}
    for key, value in recipe.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run",
                           str(path), "--results-dir", str(tmp_path / "results"), "--session",
                           "s1", "--no-live", "--no-report"],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return done, tmp_path / "results" / "keys" / "s1"


def test_the_simulator_listens_on_the_recipes_port_with_the_recipes_environment(tmp_path):
    """service_config.port was passed twice (the simulator bound it while health checks went
    to another port, until the timeout) and env became an unknown flag it exited on."""
    port = free_port()
    done, run_dir = run(tmp_path, servers={"service_config": {
        "port": port, "env": {"PYTHONPROFILEIMPORTTIME": 1}},
        "health_check": {"timeout": "60s"}})
    assert done.returncode == 0, done.stdout + done.stderr
    log = (run_dir / "logs" / "service.log").read_text()
    assert f"on http://127.0.0.1:{port} " in log           # the simulator's own start line
    assert "import time:" in log                         # Python saw the recipe's variable


def test_the_dummy_service_is_the_simulator_with_fixed_timing(tmp_path):
    """The reference's template service: it runs, and its health is checked at the recipe's
    endpoint (one that answers 200)."""
    done, run_dir = run(tmp_path, workload={"service": "dummy"},
                        servers={"health_check": {"endpoint": "/v1/models", "timeout": "60s"}})
    assert done.returncode == 0, done.stdout + done.stderr
    log = (run_dir / "logs" / "service.log").read_text()
    assert "mode fixed" in log
    summary = json.loads((run_dir / "default" / "summary.json").read_text())
    assert summary["overall"]["requests"] > 0 and summary["overall"]["error_total"] == 0


class Counting(BaseHTTPRequestHandler):
    """A real server answering 200 on /health and /v1/models, 404 anywhere else, and
    counting every path it is asked."""

    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).asked.append(self.path)
        self.send_response(200 if self.path in ("/health", "/v1/models") else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_the_health_endpoint_is_what_is_checked_and_retries_bound_the_checks(tmp_path):
    """A 404 endpoint passed before (the service's own /health was checked instead); now the
    run fails with E001 after exactly `retries` checks of that endpoint, long before the
    timeout, and the service's own paths are never asked."""
    handler = type("Handler", (Counting,), {"asked": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        done, run_dir = run(tmp_path, endpoints=[f"http://127.0.0.1:{server.server_port}"],
                            servers={"health_check": {"endpoint": "/ready", "retries": 3,
                                                      "interval": "50ms", "timeout": "10m"}})
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 11, done.stdout + done.stderr
    assert "error E001" in done.stderr and "after 3 check(s) 0.05s apart" in done.stderr
    assert f"GET http://127.0.0.1:{server.server_port}/ready: HTTP 404" in done.stderr
    assert handler.asked == ["/ready"] * 3
