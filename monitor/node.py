"""Node-wide readings through psutil: CPU per core and total, load, memory, network, disk."""
from __future__ import annotations

import psutil

from hpcbench.monitor.reading import Reading


class NodeSource:
    """Reads the node's CPU, memory, load, network and disk counters at each tick."""

    def __init__(self) -> None:
        # psutil reports CPU use since its previous call: the first call only sets the baseline.
        psutil.cpu_percent(percpu=True)

    def read(self) -> Reading:
        reading = Reading()
        per_core = psutil.cpu_percent(percpu=True)
        reading.add("hpcbench_node_cpu_cores", len(per_core))
        reading.add("hpcbench_node_cpu_utilisation_ratio", sum(per_core) / len(per_core) / 100.0)
        for core, percent in enumerate(per_core):
            reading.add("hpcbench_node_cpu_core_utilisation_ratio", percent / 100.0,
                        {"cpu": str(core)})
        for minutes, value in zip((1, 5, 15), psutil.getloadavg()):
            reading.add(f"hpcbench_node_load{minutes}", value)
        memory = psutil.virtual_memory()
        reading.add("hpcbench_node_memory_total_bytes", memory.total)
        reading.add("hpcbench_node_memory_used_bytes", memory.used)
        reading.add("hpcbench_node_memory_available_bytes", memory.available)
        for device, counters in sorted(psutil.net_io_counters(pernic=True).items()):
            reading.add("hpcbench_node_network_receive_bytes_total", counters.bytes_recv,
                        {"device": device})
            reading.add("hpcbench_node_network_transmit_bytes_total", counters.bytes_sent,
                        {"device": device})
        disk = psutil.disk_io_counters(perdisk=False)
        if disk is not None:  # None where the kernel exposes no block devices (some containers)
            reading.add("hpcbench_node_disk_read_bytes_total", disk.read_bytes)
            reading.add("hpcbench_node_disk_written_bytes_total", disk.write_bytes)
        return reading
