"""Monitor figures: CPU cost of one sample tick on a node, and of one Prometheus scrape of the
coordinator endpoint carrying a large allocation's telemetry.

A tick reads the node (psutil), this process as the service, 8 GPUs through fake_nvml (a test
double: it measures hpcbench's own per-GPU work, not the driver's) and writes the CSV and the
collector, as a monitor on an 8-GPU node does. Costs are process CPU time, i.e. what the monitor
takes away from the service it watches.
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.support on a plain run

import pytest  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from hpcbench.coordinator.bus.prometheus import SessionCollector  # noqa: E402
from hpcbench.monitor.csv_log import CsvLog  # noqa: E402
from hpcbench.monitor.exposition import TelemetryCollector  # noqa: E402
from hpcbench.monitor.gpu import GpuSource  # noqa: E402
from hpcbench.monitor.node import NodeSource  # noqa: E402
from hpcbench.monitor.sampler import Outputs, Sampler  # noqa: E402
from hpcbench.monitor.service_process import ServiceProcessSource  # noqa: E402
from tests.support import fake_nvml  # noqa: E402

TARGETS = {
    "tick_cpu_ms_8_gpus": ("<=", 20.0),
    "monitor_cpu_percent_at_1s_interval": ("<=", 2.0),
    "coordinator_scrape_cpu_ms_256_nodes": ("<=", 500.0),
}
TICKS, NODES = 200, 256


def cpu_ms(action, repeat: int) -> float:
    """Median process CPU time of `action`, in ms."""
    costs = []
    for _ in range(repeat):
        started = time.process_time()
        action()
        costs.append((time.process_time() - started) * 1e3)
    return statistics.median(costs)


def run() -> dict:
    patch = pytest.MonkeyPatch()
    try:
        fake_nvml.install(patch, [fake_nvml.FakeGpu(uuid=f"GPU-{i}") for i in range(8)])
        gpus, _ = GpuSource.open()
        with tempfile.TemporaryDirectory() as scratch:
            csv = CsvLog(Path(scratch) / "node.csv")
            sampler = Sampler("bench", "node0", 1.0,
                              [NodeSource(), ServiceProcessSource(os.getpid()), gpus],
                              Outputs(csv=csv, collector=TelemetryCollector()))
            tick = cpu_ms(sampler.sample_once, TICKS)
            message = sampler.sample_once()
            csv.close()
    finally:
        patch.undo()

    session = SessionCollector()
    for node in range(NODES):
        session.telemetry.update({**message, "node": f"node{node:03d}"})
    registry = CollectorRegistry()
    registry.register(session)
    scrape = cpu_ms(lambda: generate_latest(registry), 5)
    return {
        "tick_cpu_ms_8_gpus": round(tick, 3),
        "monitor_cpu_percent_at_1s_interval": round(tick / 1000 * 100, 3),
        "series_per_node": len(message["metrics"]) + len(message["series"]),
        "coordinator_scrape_cpu_ms_256_nodes": round(scrape, 1),
    }
