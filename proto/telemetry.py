"""The telemetry contract: what monitors send to the coordinator (data plane, ZeroMQ PUSH).

One msgpack map per sample tick of one node:
    v        schema version (SCHEMA_VERSION)
    kind     "telemetry"
    run      run id
    node     node name (Slurm node name, or the host name locally)
    seq      0, 1, 2, ... per (run, node)
    ts_ns    wall-clock time of the reading, time.time_ns()
    metrics  {metric name: float}: unlabelled node values; names follow node_exporter / DCGM
             conventions in base units (e.g. "node_memory_used_bytes")
    series   list of [metric name, {label: value}, float]: labelled values, e.g. per CPU core
             or per GPU (label "gpu" = GPU UUID)

The coordinator republishes each message unchanged on the metrics bus under the telemetry topic.
"""
from __future__ import annotations

import msgpack

SCHEMA_VERSION = 1
KIND = "telemetry"
FIELDS = ("v", "kind", "run", "node", "seq", "ts_ns", "metrics", "series")


class TelemetryError(ValueError):
    """A telemetry message that breaks the contract (counted and reported, never fatal)."""


def encode(run: str, node: str, seq: int, ts_ns: int, metrics: dict[str, float],
           series: list[tuple[str, dict[str, str], float]] = ()) -> bytes:
    return msgpack.packb({"v": SCHEMA_VERSION, "kind": KIND, "run": run, "node": node,
                          "seq": seq, "ts_ns": ts_ns, "metrics": metrics,
                          "series": [list(item) for item in series]}, use_bin_type=True)


def check(message: object) -> dict:
    """Validate an unpacked telemetry message and return it."""
    if not isinstance(message, dict):
        raise TelemetryError("telemetry must be a map")
    missing = [field for field in FIELDS if field not in message]
    if missing:
        raise TelemetryError(f"telemetry lacks fields {missing}")
    if message["v"] != SCHEMA_VERSION or message["kind"] != KIND:
        raise TelemetryError(f"unsupported telemetry v={message['v']!r} kind={message['kind']!r}")
    if not isinstance(message["metrics"], dict):
        raise TelemetryError("metrics must be a map of name to number")
    for name, value in message["metrics"].items():
        if not isinstance(name, str) or not isinstance(value, (int, float)):
            raise TelemetryError(f"metric {name!r} must map a name to a number")
    return message
