"""A finished trial's server view: the scraped series file and summary.json's `server` block.

The monitors' telemetry carries the server's own /metrics (monitor/server_metrics.py); the
session keeps it in a `ServerMetricsLog` (monitor/server_view.py). When a trial finishes,
`record` writes `<trial>/server_metrics.csv` (every scrape over the measured window, written
atomically) and returns the summary for summary.json, with the TTFT split where the server
measures TTFT itself:

    client TTFT (mean) = the client's dispatch lag + the server's TTFT + the rest

- client TTFT: the trial's measured requests with a first token, as metrics.md defines TTFT
  (from the intended time in open loop, from the send time in closed loop);
- dispatch lag: the part of it before the request left the client (send - intended: the
  client's own queueing; 0 in closed loop, whose TTFT starts at the send);
- server TTFT: the server's histogram over the window (vLLM: from the request's arrival in its
  engine to its first token);
- the rest: everything outside both clocks: network both ways, the server's HTTP front end
  before its clock starts (parsing, chat template), the way back to the client.

Means add up; percentiles do not (and the server's are bucket estimates), so the split is one of
means. The two sides count their own requests (`client_requests`, `server_requests`): the
server's span may reach one monitoring interval past each edge of the window.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hpcbench.common.files import write_atomic
from hpcbench.common.measure.definitions import MISSING, request_latencies
from hpcbench.monitor.server_view import ServerMetricsLog
from hpcbench.proto.samples import Phase, SampleBatch

SERVER_METRICS = "server_metrics.csv"
COLUMNS = ("ts_ns", "node", "metric", "le", "value")


def client_ttft_parts(batches: Iterable[SampleBatch]) -> dict | None:
    """Over the measured requests that have a TTFT: how many, their mean TTFT, and the means
    of its part before the send and after it (ms); None without any."""
    count, ttft, before_send = 0, 0, 0
    for batch in batches:
        columns = batch.columns
        latency = request_latencies(columns)["ttft"]
        rows = (columns["phase"] == Phase.MEASURED) & (latency != MISSING)
        if not rows.any():
            continue
        start = np.where(columns["slot"] < 0, columns["intended_ns"], columns["send_ns"])
        count += int(rows.sum())
        ttft += int(latency[rows].sum(dtype=np.int64))
        before_send += int((columns["send_ns"][rows] - start[rows]).sum(dtype=np.int64))
    if not count:
        return None
    return {"requests": count, "ttft_mean_ms": ttft / count / 1e6,
            "dispatch_mean_ms": before_send / count / 1e6,
            "after_send_mean_ms": (ttft - before_send) / count / 1e6}


def ttft_split(client: dict | None, server: dict) -> dict | None:
    """The split of the client's mean TTFT (module docstring); None unless both sides
    measured TTFT."""
    server_ttft = (server.get("histograms") or {}).get("ttft") or {}
    if client is None or server_ttft.get("mean_ms") is None:
        return None
    rest = client["after_send_mean_ms"] - server_ttft["mean_ms"]
    return {"client_requests": client["requests"], "server_requests": server_ttft["count"],
            "client_ttft_mean_ms": client["ttft_mean_ms"],
            "client_dispatch_mean_ms": client["dispatch_mean_ms"],
            "server_ttft_mean_ms": server_ttft["mean_ms"],
            "rest_mean_ms": rest,
            "server_share": (server_ttft["mean_ms"] / client["ttft_mean_ms"]
                             if client["ttft_mean_ms"] > 0 else None)}


def rows_csv(rows: list[tuple[int, str, str, str, float]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for ts_ns, node, metric, le, value in rows:
        writer.writerow((ts_ns, node, metric, le, repr(float(value))))
    return text.getvalue()


def record(log: ServerMetricsLog, trial_dir: Path, start_ns: int | None, end_ns: int | None,
           batches: Iterable[SampleBatch]) -> dict | None:
    """Write the window's scrapes to `trial_dir`/server_metrics.csv and return the summary
    for summary.json (None, and no file, when no monitor scraped a server during it)."""
    if start_ns is None or end_ns is None or end_ns <= start_ns:
        return None
    view = log.trial(start_ns, end_ns)
    if view is None:
        return None
    write_atomic(Path(trial_dir) / SERVER_METRICS, rows_csv(view.rows))
    summary = {"file": SERVER_METRICS, **view.summary}
    if "ttft" in summary["histograms"]:
        try:
            client = client_ttft_parts(batches)
        except (OSError, ValueError):   # unreadable raw samples: the trial's exact figures
            client = None               # say so among its problems
        summary["ttft_split"] = ttft_split(client, summary)
    return summary


def read_rows(path: Path) -> list[tuple[int, str, str, str, float]]:
    """A server_metrics.csv read back; rows that cannot be read (a damaged file) are skipped."""
    rows = []
    with open(path, newline="", encoding="utf-8") as source:
        for record_ in csv.DictReader(source):
            try:
                rows.append((int(record_["ts_ns"]), record_["node"], record_["metric"],
                             record_["le"], float(record_["value"])))
            except (KeyError, TypeError, ValueError):
                continue
    return rows
