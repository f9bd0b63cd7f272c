"""The per-node CSV in the reference format: timestamp, gpuN_util, gpuN_mem_used, ..., cpu_percent, ram_used_MB.

Each GPU also gets gpuN_power_W after its memory column (the reference's "..."), so reports can
plot power. Units follow the reference: utilisation in percent, memory in MiB ("MB"), power in
watts, timestamps in ISO 8601
UTC with milliseconds. The GPU columns are fixed by the first row (GPUs do not come and go during
a run). Each row is flushed as it is written, so a killed monitor loses at most the current row.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import re
from pathlib import Path

MIB = 1024 * 1024
_GPU_UTIL = re.compile(r"gpu(\d+)_util")


class CsvLog:
    """Appends: a re-run of a session (or a restarted monitor) adds its rows under the header
    already there, so the telemetry of trials measured by an earlier run is kept."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._gpu_indices: list[str] | None = _gpu_columns(path)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        self._file = os.fdopen(descriptor, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)

    def write(self, ts_ns: int, metrics: dict[str, float],
              series: list[tuple[str, dict[str, str], float]]) -> None:
        gpus: dict[str, dict[str, float]] = {}
        for name, labels, value in series:
            if name.startswith("hpcbench_gpu_") and "index" in labels:
                gpus.setdefault(labels["index"], {})[name] = value
        if self._gpu_indices is None:
            self._gpu_indices = sorted(gpus, key=int)
            header = ["timestamp"]
            for index in self._gpu_indices:
                header += [f"gpu{index}_util", f"gpu{index}_mem_used", f"gpu{index}_power_W"]
            self._writer.writerow(header + ["cpu_percent", "ram_used_MB"])
        stamp = dt.datetime.fromtimestamp(ts_ns / 1e9, dt.timezone.utc)
        row = [stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]]
        for index in self._gpu_indices:
            gpu = gpus.get(index, {})
            row += [_number(gpu.get("hpcbench_gpu_utilisation_ratio"), 100.0),
                    _number(gpu.get("hpcbench_gpu_memory_used_bytes"), 1 / MIB),
                    _number(gpu.get("hpcbench_gpu_power_watts"), 1.0)]
        row += [_number(metrics.get("hpcbench_node_cpu_utilisation_ratio"), 100.0),
                _number(metrics.get("hpcbench_node_memory_used_bytes"), 1 / MIB)]
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _gpu_columns(path: Path) -> list[str] | None:
    """The GPU indices of the header an earlier writer left in `path` (None: no header yet).
    A GPU that was not there then gets no column; one that is gone leaves its cells empty."""
    try:
        with path.open(encoding="utf-8", newline="") as existing:
            header = next(csv.reader(existing), None)
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not header:
        return None
    return [match.group(1) for match in map(_GPU_UTIL.fullmatch, header) if match]


def _number(value: float | None, scale: float) -> str:
    """One decimal; empty when the value was not read this tick (e.g. a GPU metric failed)."""
    return "" if value is None else f"{value * scale:.1f}"
