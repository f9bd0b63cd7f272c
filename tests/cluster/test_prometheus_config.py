"""monitor/prometheus.yml passes Debian's `promtool check config` (Prometheus is installed by
`make test` as root). The dashboards and compose file are checked by
tests/unit/test_grafana_dashboards.py."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.prometheus_stack import binary

MONITOR_DIR = Path(__file__).resolve().parents[2] / "monitor"


def test_prometheus_config_passes_promtool():
    promtool = binary("promtool", "prometheus")
    check = subprocess.run([promtool, "check", "config", str(MONITOR_DIR / "prometheus.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
