"""The telemetry contract: what monitors send to the coordinator (data plane, ZeroMQ PUSH).

One msgpack map per sample tick of one node:
    v        schema version (SCHEMA_VERSION)
    kind     "telemetry"
    run      run id
    node     node name (Slurm node name, or the host name locally)
    seq      0, 1, 2, ... per (run, node)
    ts_ns    wall-clock time of the reading, time.time_ns()
    metrics  {metric name: float}: unlabelled node values; names follow node_exporter / DCGM
             conventions in base units with an hpcbench_ prefix (hpcbench.monitor.catalogue
             lists them all, e.g. "hpcbench_node_memory_used_bytes"); `_total` = counter
    series   list of [metric name, {label: text}, float]: labelled values, e.g. per CPU core
             (label "cpu") or per GPU (label "gpu" = GPU UUID, "index", "model")

The inference server's own latency histograms (catalogue.SERVER_HISTOGRAMS) travel the
Prometheus way, within these fields: "<name>_bucket" series labelled "le" (the bucket's upper
bound as Prometheus writes it, "+Inf" last; cumulative counts) beside unlabelled "<name>_sum"
and "<name>_count" metrics. A receiver that does not know a name may ignore it, so new names
need no new version.

The coordinator republishes each message unchanged on the metrics bus under the telemetry topic.
"""
from __future__ import annotations

import msgpack

SCHEMA_VERSION = 1
KIND = "telemetry"
FIELDS = ("v", "kind", "run", "node", "seq", "ts_ns", "metrics", "series")


class TelemetryError(ValueError):
    """A telemetry message that breaks the contract (counted and reported, never fatal)."""


def build(run: str, node: str, seq: int, ts_ns: int, metrics: dict[str, float],
          series: list[tuple[str, dict[str, str], float]] = ()) -> dict:
    """The telemetry map, as `check` returns it after a round trip."""
    return {"v": SCHEMA_VERSION, "kind": KIND, "run": run, "node": node, "seq": seq,
            "ts_ns": ts_ns, "metrics": metrics, "series": [list(item) for item in series]}


def encode(run: str, node: str, seq: int, ts_ns: int, metrics: dict[str, float],
           series: list[tuple[str, dict[str, str], float]] = ()) -> bytes:
    return pack(build(run, node, seq, ts_ns, metrics, series))


def pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def decode(payload: bytes) -> dict:
    """Unpack and check one telemetry message; TelemetryError for anything malformed."""
    try:
        message = msgpack.unpackb(payload, raw=False)
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise TelemetryError(f"telemetry is not valid msgpack: {error}") from None
    return check(message)


def check(message: object) -> dict:
    """Validate an unpacked telemetry message and return it."""
    if not isinstance(message, dict):
        raise TelemetryError("telemetry must be a map")
    missing = [field for field in FIELDS if field not in message]
    if missing:
        raise TelemetryError(f"telemetry lacks fields {missing}")
    if message["v"] != SCHEMA_VERSION or message["kind"] != KIND:
        raise TelemetryError(f"unsupported telemetry v={message['v']!r} kind={message['kind']!r}")
    for field, kind in (("run", str), ("node", str), ("seq", int), ("ts_ns", int)):
        if not isinstance(message[field], kind) or isinstance(message[field], bool):
            raise TelemetryError(f"telemetry {field} must be {kind.__name__}, "
                                 f"not {message[field]!r}")
    if not isinstance(message["metrics"], dict):
        raise TelemetryError("metrics must be a map of name to number")
    for name, value in message["metrics"].items():
        if not isinstance(name, str) or not isinstance(value, (int, float)):
            raise TelemetryError(f"metric {name!r} must map a name to a number")
    if not isinstance(message["series"], list):
        raise TelemetryError("series must be a list of [name, labels, value]")
    for item in message["series"]:
        if not (isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], str)
                and isinstance(item[1], dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in item[1].items())
                and isinstance(item[2], (int, float))):
            raise TelemetryError(f"series item {item!r} must be [name, {{label: text}}, number]")
    return message
