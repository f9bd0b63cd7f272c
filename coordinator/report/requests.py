"""Every request of a trial as one columnar table, read back from its raw samples.

The table is what the report, its plots and the per-request export are made of: the contract's
columns (proto/samples.py) of all batches concatenated, plus per row its executor, node, the
executor's clock offset (epoch_ns) and the latencies the row defines, computed by the
measurement core (common/measure/definitions.py `request_latencies`), so each value keeps its
request and its time; tests check that their percentiles equal the aggregator's exact ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcbench.common.measure.definitions import MISSING, request_latencies
from hpcbench.coordinator.session.results import read_samples
from hpcbench.proto.samples import REQUEST_COLUMNS, ErrorClass, Phase

LATENCIES = ("ttft", "itl", "tpot", "e2e")


@dataclass
class RequestTable:
    """Rows of one trial. `columns` holds the contract's columns and, per row: executor and node
    (indices into `executors`/`nodes`), epoch_ns, and ttft_ns, tpot_ns, e2e_ns, max_itl_ns
    (MISSING where undefined). `itl_ns`/`itl_row`: every inter-chunk gap and its row."""

    columns: dict[str, np.ndarray]
    itl_ns: np.ndarray
    itl_row: np.ndarray
    executors: list[str]
    nodes: list[str]

    def __len__(self) -> int:
        return len(self.columns["req_id"])

    @property
    def measured(self) -> np.ndarray:
        return self.columns["phase"] == Phase.MEASURED

    @property
    def ok(self) -> np.ndarray:
        return self.measured & (self.columns["error"] == ErrorClass.OK)

    def wall_ns(self, column: str) -> np.ndarray:
        """A *_ns column as wall-clock ns (0 where the time is missing)."""
        values = self.columns[column]
        return np.where(values > 0, values + self.columns["epoch_ns"], 0)

    def measured_start_ns(self) -> int | None:
        """Wall clock of the earliest intended send of a measured row: time zero of the plots."""
        measured = self.measured
        if not measured.any():
            return None
        return int(self.wall_ns("intended_ns")[measured].min())

    def latency(self, name: str, measured_only: bool = True) -> np.ndarray:
        """Values (ns) of one latency; ITL: every gap of successful measured rows."""
        if name == "itl":
            keep = self.ok[self.itl_row]
            return self.itl_ns[keep]
        values = self.columns[f"{name}_ns"]
        keep = values != MISSING
        if measured_only:
            keep &= self.measured
        return values[keep]


def load_requests(samples_path: Path) -> RequestTable:
    """Read a trial's samples.msgpack into one table (an empty table if it has no rows)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in REQUEST_COLUMNS}
    owners: dict[str, list[np.ndarray]] = {"executor": [], "node": [], "epoch_ns": []}
    gaps: list[np.ndarray] = []
    executors: dict[str, int] = {}
    nodes: dict[str, int] = {}
    for batch in read_samples(samples_path):
        for name in REQUEST_COLUMNS:
            parts[name].append(batch.columns[name])
        n = batch.n
        owners["executor"].append(np.full(n, executors.setdefault(batch.executor,
                                                                   len(executors)), np.int32))
        owners["node"].append(np.full(n, nodes.setdefault(batch.node, len(nodes)), np.int32))
        owners["epoch_ns"].append(np.full(n, batch.epoch_ns, np.int64))
        gaps.append(batch.itl_ns)
    columns = {name: (np.concatenate(chunks) if chunks else np.zeros(0, REQUEST_COLUMNS[name]))
               for name, chunks in parts.items()}
    columns.update({name: (np.concatenate(chunks) if chunks else np.zeros(0, np.int64))
                    for name, chunks in owners.items()})
    itl_ns = np.concatenate(gaps) if gaps else np.zeros(0, np.int64)
    gaps_per_row = np.maximum(columns["chunks"].astype(np.int64) - 1, 0)
    itl_row = np.repeat(np.arange(len(gaps_per_row)), gaps_per_row)
    latencies = request_latencies(columns, itl_ns, gaps_per_row)
    columns.update({f"{name}_ns": values for name, values in latencies.items()})
    return RequestTable(columns, itl_ns, itl_row, list(executors), list(nodes))
