"""Real Prometheus and Pushgateway servers (Debian packages) for tests, on free ports with
temporary storage, ready when their /-/ready answers; always stopped afterwards.

Absent binaries skip the test with a reason when not root; as root (where `make test` installs
them) absence is a failure, so CI cannot silently skip these suites.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.ports import free_port
from tests.support.waiting import wait_until


def binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (Debian package {package}); run 'sudo make system-deps'"
    if os.geteuid() != 0:
        pytest.skip(reason)
    pytest.fail(reason)


def _ready(url: str, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        return True  # ended: stop waiting, the caller reports it
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def _server(argv_for_port, workdir: Path, name: str) -> Iterator[str]:
    """Start a server on a free port (retrying if another process took the port first)."""
    for _attempt in range(3):
        port = free_port()
        log = (workdir / f"{name}.log").open("w")
        process = subprocess.Popen(argv_for_port(port), stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda url=url, process=process: _ready(url, process), 60, what=f"{name} /-/ready")
            if process.poll() is None:
                yield url
                return
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()
    raise AssertionError(f"{name} did not start: {(workdir / f'{name}.log').read_text()[-2000:]}")


@contextlib.contextmanager
def prometheus(workdir: Path, scrape_configs: list[dict]) -> Iterator[str]:
    """A Prometheus scraping `scrape_configs` every second; yields its base URL."""
    executable = binary("prometheus", "prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": scrape_configs}))
    with _server(lambda port: [executable, f"--config.file={config}",
                               f"--storage.tsdb.path={workdir / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}"],
                 workdir, "prometheus") as url:
        yield url


@contextlib.contextmanager
def pushgateway(workdir: Path) -> Iterator[str]:
    """A Prometheus Pushgateway without persistence; yields its base URL."""
    executable = binary("prometheus-pushgateway", "prometheus-pushgateway")
    workdir.mkdir(parents=True, exist_ok=True)
    # Debian's build persists to /var/lib/prometheus by default: an empty file name keeps the
    # metrics in memory only, so no test sees another's pushes.
    with _server(lambda port: [executable, f"--web.listen-address=127.0.0.1:{port}",
                               "--persistence.file="],
                 workdir, "pushgateway") as url:
        yield url


def wait_for_targets(prometheus_url: str, count: int) -> None:
    """Until Prometheus scrapes `count` targets: its discovery hands new targets to the scrape
    loops only every 5 s, too late for a short run started right away."""
    def active() -> bool:
        with urllib.request.urlopen(f"{prometheus_url}/api/v1/targets", timeout=5) as response:
            return len(json.load(response)["data"]["activeTargets"]) >= count

    wait_until(active, 30, what=f"{count} active Prometheus targets")


def query(prometheus_url: str, promql: str) -> list[dict]:
    """The result vector of an instant query through Prometheus' HTTP API."""
    address = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(address, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]
