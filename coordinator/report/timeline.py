"""A trial over time: latency percentiles and outcomes per 1 s bin of the measured window.

Each measured request falls in the bin of its end (when its latency became known), counted from
the trial's time zero (the earliest intended send of a measured request). Percentiles use the
nearest-rank rule of common/measure/percentiles.exact_percentiles, like every exact figure in hpcbench.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcbench.common.measure.definitions import MISSING
from hpcbench.common.measure.percentiles import exact_percentiles
from hpcbench.coordinator.report.requests import RequestTable
from hpcbench.proto.samples import ErrorClass

BIN_S = 1.0
TIMELINE_PERCENTILES = (50.0, 90.0, 99.0)


@dataclass
class Timeline:
    bin_s: float
    starts_s: np.ndarray                               # bin starts, s from time zero
    percentiles: dict[str, dict[float, np.ndarray]]    # latency -> percentile -> ms (NaN empty)
    outcomes: dict[str, np.ndarray]                    # "ok" / error class name -> count per bin


def timeline(table: RequestTable, bin_s: float = BIN_S) -> Timeline | None:
    """The trial's measured requests binned over time; None when it has none."""
    zero = table.measured_start_ns()
    if zero is None:
        return None
    measured = table.measured
    end_s = (table.wall_ns("end_ns") - zero) / 1e9
    bins = np.maximum(np.floor(end_s / bin_s), 0).astype(np.int64)
    count = int(bins[measured].max()) + 1
    percentiles = {}
    for name in ("ttft", "tpot", "e2e"):
        values = table.columns[f"{name}_ns"]
        keep = measured & (values != MISSING)
        percentiles[name] = _binned_percentiles(values[keep], bins[keep], count)
    ok_gaps = table.ok[table.itl_row]
    percentiles["itl"] = _binned_percentiles(table.itl_ns[ok_gaps],
                                             bins[table.itl_row][ok_gaps], count)
    outcomes = {}
    for error in ErrorClass:
        rows = measured & (table.columns["error"] == error)
        if error == ErrorClass.OK or rows.any():
            outcomes[error.name.lower()] = np.bincount(bins[rows], minlength=count)[:count]
    return Timeline(bin_s, np.arange(count) * bin_s, percentiles, outcomes)


def _binned_percentiles(values: np.ndarray, bins: np.ndarray,
                        count: int) -> dict[float, np.ndarray]:
    result = {p: np.full(count, np.nan) for p in TIMELINE_PERCENTILES}
    order = np.argsort(bins, kind="stable")
    values, bins = values[order], bins[order]
    edges = np.searchsorted(bins, np.arange(count + 1))
    for index in range(count):
        chunk = values[edges[index]:edges[index + 1]]
        if len(chunk):
            for p, value in zip(TIMELINE_PERCENTILES, exact_percentiles(chunk,
                                                                        TIMELINE_PERCENTILES)):
                result[p][index] = value / 1e6
    return result
