"""The reference toolkit's Prometheus names for node telemetry: an opt-in second exposition.

Dashboards and PromQL written for the reference query `cpu_usage_percent`,
`gpu_memory_used_megabytes{gpu_id="0"}` and so on. With `--compat-names reference` (in a
session: the recipe's `monitoring.prometheus.compat_names: reference`) the telemetry expositions
(the monitor's endpoint, its Pushgateway pushes, the coordinator's endpoint) carry those names
too, next to hpcbench's own, which never change.

Each name is one hpcbench reading in the unit the reference's name states (percent, not a
ratio; megabytes, not bytes), with the reference's labels and no others: `instance` (the node)
and, per GPU, `gpu_id` (the NVML index, as in the CSV's gpuN columns); `job` is the scrape job's
or, for pushes, the gateway's grouping key's (`hpcbench-monitor`). "Megabytes" are MiB (2**20
bytes), the unit of the reference's CSV column `ram_used_MB` and of nvidia-smi, so a dashboard
shows the CSV's numbers.

A scrape target whose series carry `instance` needs `honor_labels: true` in Prometheus (as a
Pushgateway does), or Prometheus renames it `exported_instance`. The exposition leaves `job` to
Prometheus, so the coordinator's endpoint and a monitor's, scraped by two jobs, never yield the
same series twice. A push leaves `instance` out too: the gateway refuses pushed series that
carry a grouping label, and its grouping key (job, instance = node) gives the same values.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import Metric

CHOICES = ("none", "reference")   # --compat-names and monitoring.prometheus.compat_names
MIB = 1024 * 1024


@dataclass(frozen=True)
class ReferenceName:
    name: str
    source: str                      # the hpcbench reading (monitor/catalogue.py)
    scale: float                     # reference value = hpcbench value * scale
    help: str
    label: tuple[str, str] | None = None   # (reference label, the reading's label it copies)

    @property
    def counter(self) -> bool:
        return self.name.endswith("_total")


NAMES = (
    ReferenceName("cpu_usage_percent", "hpcbench_node_cpu_utilisation_ratio", 100.0,
                  "CPU busy percent of the node, the mean of its cores (0..100), since the "
                  "previous sample; hpcbench_node_cpu_utilisation_ratio * 100."),
    ReferenceName("ram_used_megabytes", "hpcbench_node_memory_used_bytes", 1 / MIB,
                  "Memory in use (total minus free, buffers and cache) in MiB; "
                  "hpcbench_node_memory_used_bytes / 2^20."),
    ReferenceName("gpu_utilization_percent", "hpcbench_gpu_utilisation_ratio", 100.0,
                  "GPU busy percent (0..100), label gpu_id = NVML index; "
                  "hpcbench_gpu_utilisation_ratio * 100.", ("gpu_id", "index")),
    ReferenceName("gpu_memory_used_megabytes", "hpcbench_gpu_memory_used_bytes", 1 / MIB,
                  "GPU framebuffer memory in use in MiB, label gpu_id = NVML index; "
                  "hpcbench_gpu_memory_used_bytes / 2^20.", ("gpu_id", "index")),
    ReferenceName("network_rx_bytes_total", "hpcbench_node_network_receive_bytes_total", 1.0,
                  "Bytes received by a network interface (label interface); "
                  "hpcbench_node_network_receive_bytes_total.", ("interface", "device")),
    ReferenceName("network_tx_bytes_total", "hpcbench_node_network_transmit_bytes_total", 1.0,
                  "Bytes sent by a network interface (label interface); "
                  "hpcbench_node_network_transmit_bytes_total.", ("interface", "device")),
)
_BY_SOURCE = {name.source: name for name in NAMES}


def reference_families(messages: Iterable[dict], instance: bool = True) -> list[Metric]:
    """The reference's families for the latest telemetry message of each node.

    `instance`: label each series with the node as `instance`; False for a push, where the
    gateway's grouping key gives it."""
    families: dict[str, Metric] = {}
    for message in messages:
        base = {"instance": message["node"]} if instance else {}
        for source, value in message["metrics"].items():
            name = _BY_SOURCE.get(source)
            if name is not None and name.label is None:
                _add(families, name, base, value)
        for source, labels, value in message["series"]:
            name = _BY_SOURCE.get(source)
            if name is not None and name.label is not None and name.label[1] in labels:
                _add(families, name, {**base, name.label[0]: labels[name.label[1]]}, value)
    return list(families.values())


def _add(families: dict[str, Metric], name: ReferenceName, labels: dict, value: float) -> None:
    family = families.get(name.name)
    if family is None:
        kind = "counter" if name.counter else "gauge"
        family = families[name.name] = Metric(
            name.name[: -len("_total")] if name.counter else name.name, name.help, kind)
    family.add_sample(name.name, labels, value * name.scale)
