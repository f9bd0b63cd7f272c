"""The server's own view of a trial: its scraped /metrics over the measured window, summed up.

`ServerMetricsLog` keeps, per node, every telemetry message's `hpcbench_server_*` values (one
point per scrape of the server; server_metrics.py maps them), as the coordinator receives them.
`trial(start_ns, end_ns)` answers for a measured window:

- `rows`: every scrape from the last one read at or before the window's start to the first
  one sent at or after its end, as (ts_ns, node, metric, le, value); `ts_ns` is when the
  scrape's answer was read (the server rendered it after the scrape was sent, which may be
  well after the monitor's tick on a busy node: both instants travel in telemetry), `le` the
  bucket bound of a histogram's `_bucket` rows, "" otherwise. Bracketing the window lets
  counters and histograms be differenced over all of it; the span may reach up to one
  monitoring interval beyond each edge, and `span` says exactly where it lies.
- `summary`: what the window adds up to, in summary.json's units (ms, counts, ratios):
  gauges (KV-cache usage, requests running and waiting) as mean / min / max over the scrapes
  inside the window; counters (requests finished, prompt and generated tokens, preemptions,
  prefix-cache hits, ...) as their increase over the span; the server's latency histograms as
  count, mean and p50 / p90 / p99 of their increase; by Little's law, the mean number of
  requests in the server and in its queue (the time finished requests spent there per second
  of the span), which gauges read at scrape instants can miss. The mean is exact (sum / count); the
  percentiles are estimated from the buckets by linear interpolation, as PromQL's
  histogram_quantile does, so they are only as fine as the server's buckets.

Counter resets (a restarted server) count as Prometheus' `increase` counts them. Several nodes
(one server each) are added up: counters and histograms summed, the request gauges' means
summed, ratios averaged; each node's figures are also kept under `nodes`.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from hpcbench.monitor.catalogue import SERVER_HISTOGRAMS, histogram_of
from hpcbench.monitor.server_metrics import SCRAPE_READ, SCRAPE_SENT

PREFIX = "hpcbench_server_"
UP = "hpcbench_server_up"
MAX_POINTS_PER_NODE = 20_000        # a longer trial keeps its newest scrapes (see `span`)
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))

# summary name -> hpcbench gauge, how nodes combine
GAUGES = {
    "kv_cache_usage_ratio": ("hpcbench_server_kv_cache_usage_ratio", "mean"),
    "requests_running": ("hpcbench_server_requests_running", "sum"),
    "requests_waiting": ("hpcbench_server_requests_waiting", "sum"),
}
# summary name -> hpcbench counter
COUNTERS = {
    "requests_finished": "hpcbench_server_request_success_total",
    "prompt_tokens": "hpcbench_server_prompt_tokens_total",
    "generation_tokens": "hpcbench_server_generation_tokens_total",
    "preemptions": "hpcbench_server_preemptions_total",
    "prefix_cache_queries": "hpcbench_server_prefix_cache_queries_total",
    "prefix_cache_hits": "hpcbench_server_prefix_cache_hits_total",
    "prompt_seconds": "hpcbench_server_prompt_seconds_total",
    "generation_seconds": "hpcbench_server_generation_seconds_total",
    "decode_calls": "hpcbench_server_decode_calls_total",
}
BUSY_SLOTS = "hpcbench_server_busy_slots_per_decode"
# summary name -> hpcbench histogram (seconds)
HISTOGRAMS = {
    "ttft": "hpcbench_server_time_to_first_token_seconds",
    "itl": "hpcbench_server_inter_token_latency_seconds",
    "tpot": "hpcbench_server_request_time_per_output_token_seconds",
    "e2e": "hpcbench_server_e2e_request_latency_seconds",
    "queue_time": "hpcbench_server_request_queue_time_seconds",
    "prefill_time": "hpcbench_server_request_prefill_time_seconds",
    "decode_time": "hpcbench_server_request_decode_time_seconds",
}
assert set(HISTOGRAMS.values()) == set(SERVER_HISTOGRAMS)


@dataclass(frozen=True)
class Scrape:
    """One node's server values at one tick: plain values and histograms (le -> count).
    `ts_ns`: when the answer was read, `sent_ns`: when the scrape was sent (the server
    rendered its values in between); both the tick's time for a failed scrape, or from a
    monitor that does not say."""

    ts_ns: int
    values: dict[str, float]
    buckets: dict[str, dict[float, float]]
    sent_ns: int

    @property
    def up(self) -> bool:
        return self.values.get(UP, 0.0) > 0


@dataclass(frozen=True)
class ServerView:
    rows: list[tuple[int, str, str, str, float]]
    summary: dict


class ServerMetricsLog:
    """Every node's server scrapes as telemetry brings them; thread-safe (the ingest thread
    observes while the session asks for a trial)."""

    def __init__(self, max_points: int = MAX_POINTS_PER_NODE) -> None:
        self._nodes: dict[str, deque[Scrape]] = {}
        self._max_points = max_points
        self._lock = threading.Lock()

    def observe(self, message: dict) -> None:
        """Take one checked telemetry message (proto/telemetry.py); one without the server's
        values (a node whose monitor scrapes no server) is ignored."""
        metrics = message["metrics"]
        if UP not in metrics:
            return
        # the server's plain values and its histograms' _sum and _count; a NaN or infinite
        # value (Prometheus allows them) is left out, so summary.json stays plain JSON
        values = {name: float(value) for name, value in metrics.items()
                  if name.startswith(PREFIX) and math.isfinite(value)}
        buckets: dict[str, dict[float, float]] = {}
        for name, labels, value in message["series"]:
            histogram = histogram_of(name)
            if histogram is not None and name.endswith("_bucket") and math.isfinite(value):
                bound = _bound(labels.get("le"))
                if bound is not None:
                    buckets.setdefault(histogram, {})[bound] = float(value)
        with self._lock:
            points = self._nodes.get(message["node"])
            if points is None:
                points = self._nodes[message["node"]] = deque(maxlen=self._max_points)
            points.append(Scrape(_stamp(values, SCRAPE_READ, message["ts_ns"]), values, buckets,
                                 _stamp(values, SCRAPE_SENT, message["ts_ns"])))

    @property
    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._nodes)

    def unanswered_nodes(self) -> set[str]:
        """Nodes whose monitor scrapes a server that has not answered any scrape yet."""
        with self._lock:
            return {node for node, points in self._nodes.items()
                    if not any(point.up for point in points)}

    def covered(self, end_ns: int) -> bool:
        """Whether every node has a scrape at or after `end_ns` (the window is bracketed)."""
        with self._lock:
            return all(points and max(p.sent_ns for p in points) >= end_ns
                       for points in self._nodes.values())

    def forget_before(self, ts_ns: int) -> None:
        """Drop scrapes older than `ts_ns` but the last one before it (the next window may
        start right there), so memory stays bounded over a long session."""
        with self._lock:
            for points in self._nodes.values():
                ordered = sorted(points, key=lambda point: point.ts_ns)
                older = sum(1 for point in ordered if point.ts_ns < ts_ns)
                points.clear()
                points.extend(ordered[max(0, older - 1):])

    def trial(self, start_ns: int, end_ns: int) -> ServerView | None:
        """The window's rows and summary (module docstring); None when no server was scraped."""
        if end_ns <= start_ns:
            raise ValueError(f"trial window end {end_ns} must be after start {start_ns}")
        with self._lock:
            nodes = {node: sorted(points, key=lambda point: point.ts_ns)
                     for node, points in self._nodes.items() if points}
        spans = {node: _bracket(points, start_ns, end_ns) for node, points in nodes.items()}
        spans = {node: points for node, points in spans.items() if points}
        if not spans:
            return None
        rows = [row for node, points in sorted(spans.items()) for row in _rows(node, points)]
        per_node = {node: _node_summary(points, start_ns, end_ns)
                    for node, points in sorted(spans.items())}
        return ServerView(rows, _combine(per_node, start_ns, end_ns))


def _bound(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _stamp(values: dict[str, float], name: str, default_ns: int) -> int:
    return int(round(values[name] * 1e9)) if name in values else default_ns


def _bracket(points: list[Scrape], start_ns: int, end_ns: int) -> list[Scrape]:
    """The scrapes from the last answered one read at or before `start_ns` (else the first
    answered one) to the first answered one sent at or after `end_ns` (else the last
    answered one): the server rendered the first before the window and the last after it.
    Failed scrapes in between stay (they are part of the record); without any answered
    scrape, every scrape in the window's neighbourhood is kept, to show the server was down."""
    answered = [index for index, point in enumerate(points) if point.up]
    if not answered:
        inside = [index for index, point in enumerate(points)
                  if start_ns <= point.ts_ns and point.sent_ns <= end_ns]
        return [points[index] for index in inside] or points[-1:]
    first = max((index for index in answered if points[index].ts_ns <= start_ns),
                default=answered[0])
    last = min((index for index in answered
                if points[index].sent_ns >= end_ns and index >= first), default=answered[-1])
    return points[first:last + 1] if last >= first else [points[first]]


def _rows(node: str, points: list[Scrape]) -> list[tuple[int, str, str, str, float]]:
    rows = []
    for point in points:
        for name in sorted(point.values):
            rows.append((point.ts_ns, node, name, "", point.values[name]))
        for histogram in sorted(point.buckets):
            for bound in sorted(point.buckets[histogram]):
                rows.append((point.ts_ns, node, f"{histogram}_bucket", _le(bound),
                             point.buckets[histogram][bound]))
    return rows


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def increase(values: list[float]) -> float:
    """A counter's increase over consecutive readings; a drop is a reset (Prometheus'
    `increase`: the reading after a reset counts from zero)."""
    total = 0.0
    for before, after in zip(values, values[1:]):
        total += after - before if after >= before else after
    return total


def _series(points: list[Scrape], name: str) -> list[float]:
    """The readings of `name` in the scrapes that answered (a failed scrape has none)."""
    return [point.values[name] for point in points if point.up and name in point.values]


def _node_summary(points: list[Scrape], start_ns: int, end_ns: int) -> dict:
    inside = [point for point in points if start_ns <= point.ts_ns <= end_ns] or points
    summary: dict = {
        "span": {"start_ns": points[0].ts_ns, "end_ns": points[-1].ts_ns},
        "covers_window": points[0].ts_ns <= start_ns and points[-1].sent_ns >= end_ns,
        "scrapes": len(points), "scrapes_answered": sum(point.up for point in points),
        "gauges": {}, "counters": {}, "histograms": {}}
    for short, (name, _) in GAUGES.items():
        values = _series(inside, name)
        if values:
            summary["gauges"][short] = {"mean": sum(values) / len(values), "min": min(values),
                                        "max": max(values), "scrapes": len(values)}
    for short, name in COUNTERS.items():
        values = _series(points, name)
        if len(values) >= 2:
            summary["counters"][short] = increase(values)
    for short, name in HISTOGRAMS.items():
        answered = [point for point in points
                    if point.up and name in point.buckets and f"{name}_count" in point.values]
        if len(answered) < 2:
            continue
        bounds = sorted(set.intersection(*(set(point.buckets[name]) for point in answered)))
        summary["histograms"][short] = {
            "buckets": {bound: increase([point.buckets[name][bound] for point in answered])
                        for bound in bounds},
            "sum": increase([point.values[f"{name}_sum"] for point in answered]),
            "count": increase([point.values[f"{name}_count"] for point in answered])}
    busy = _busy_slots(points)
    if busy is not None:
        summary["busy_slots_per_decode"] = busy
    return summary


def _busy_slots(points: list[Scrape]) -> float | None:
    """llama-server's busy slots per decode step over the span: it exports the average since
    it started, so the span's own is (avg_end * decodes_end - avg_start * decodes_start) /
    (decodes_end - decodes_start)."""
    decodes = COUNTERS["decode_calls"]
    answered = [point for point in points
                if point.up and BUSY_SLOTS in point.values and decodes in point.values]
    if len(answered) < 2:
        return None
    first, last = answered[0].values, answered[-1].values
    steps = last[decodes] - first[decodes]
    if steps <= 0:
        return None
    return (last[BUSY_SLOTS] * last[decodes] - first[BUSY_SLOTS] * first[decodes]) / steps


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a histogram's cumulative bucket counts (le -> count), interpolated
    linearly inside its bucket as PromQL's histogram_quantile: the lowest bucket from 0 (from
    its bound when that is not positive), the +Inf bucket answers the highest finite bound.
    None without observations."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    below, lower = 0.0, 0.0
    for index, bound in enumerate(bounds):
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return bounds[-2] if len(bounds) > 1 else None
            if index == 0 and bound <= 0:
                return bound
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        below, lower = count, bound
    return bounds[-2] if len(bounds) > 1 else None


def quantile_bucket(q: float, buckets: dict[float, float]) -> tuple[float, float] | None:
    """The bucket the q-quantile lies in, as (lower, upper) bounds (upper may be +Inf): all
    that the histogram knows for certain of that quantile. None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower = 0.0 if bounds[0] > 0 else -math.inf
    for bound in bounds:
        if buckets[bound] >= rank:
            return lower, bound
        lower = bound
    return lower, math.inf


def _histogram_figures(histogram: dict) -> dict:
    """count, mean_ms, estimated percentiles (ms) of a histogram's increase and the bucket
    each lies in (`<p>_bucket_ms`: [lower, upper], upper null for +Inf)."""
    count = histogram["count"]
    figures = {"count": count,
               "mean_ms": histogram["sum"] / count * 1e3 if count > 0 else None}
    for key, q in QUANTILES:
        value = histogram_quantile(q, histogram["buckets"])
        figures[f"{key}_ms"] = value * 1e3 if value is not None else None
        bucket = quantile_bucket(q, histogram["buckets"])
        figures[f"{key}_bucket_ms"] = (None if bucket is None else
                                       [_ms_or_none(bucket[0]), _ms_or_none(bucket[1])])
    return figures


def _ms_or_none(seconds: float) -> float | None:
    """Seconds as ms; None for an infinite bound (JSON has no infinity)."""
    return None if math.isinf(seconds) else seconds * 1e3


def _finish(summary: dict) -> dict:
    """A node's (or the sum's) raw increases turned into the figures summary.json keeps."""
    done = {key: value for key, value in summary.items() if key != "histograms"}
    done["histograms"] = {short: _histogram_figures(histogram)
                          for short, histogram in summary["histograms"].items()}
    counters = summary["counters"]
    derived = {}
    if counters.get("prefix_cache_queries"):
        derived["prefix_cache_hit_ratio"] = (counters.get("prefix_cache_hits", 0.0)
                                             / counters["prefix_cache_queries"])
    if counters.get("prompt_seconds"):
        derived["prompt_tokens_per_busy_s"] = (counters.get("prompt_tokens", 0.0)
                                               / counters["prompt_seconds"])
    if counters.get("generation_tokens") and "generation_seconds" in counters:
        derived["generation_ms_per_token_per_slot"] = (counters["generation_seconds"] * 1e3
                                                       / counters["generation_tokens"])
    # Little's law: the time finished requests spent in the server (or in its queue) per
    # second of the span is how many were there on average, whatever the gauges happened to
    # read at the instants of the scrapes (a server idle between short batches reads 0 often)
    span_s = (summary["span"]["end_ns"] - summary["span"]["start_ns"]) / 1e9
    for key, short in (("requests_in_server_mean", "e2e"), ("requests_queued_mean", "queue_time")):
        histogram = summary["histograms"].get(short)
        if histogram is not None and span_s > 0:
            derived[key] = histogram["sum"] / span_s
    done["derived"] = derived
    return done


def _combine(per_node: dict[str, dict], start_ns: int, end_ns: int) -> dict:
    """The nodes added up (module docstring), with each node's own figures under `nodes`."""
    parts = list(per_node.values())
    combined: dict = {
        "nodes": {node: _finish(summary) for node, summary in per_node.items()},
        "window_s": (end_ns - start_ns) / 1e9,
        "span": {"start_ns": min(part["span"]["start_ns"] for part in parts),
                 "end_ns": max(part["span"]["end_ns"] for part in parts)},
        "covers_window": all(part["covers_window"] for part in parts),
        "scrapes": sum(part["scrapes"] for part in parts),
        "scrapes_answered": sum(part["scrapes_answered"] for part in parts),
        "gauges": {}, "counters": {}, "histograms": {}}
    span = combined["span"]
    span["seconds"] = (span["end_ns"] - span["start_ns"]) / 1e9
    for short, (_, how) in GAUGES.items():
        found = [part["gauges"][short] for part in parts if short in part["gauges"]]
        if found:
            add = (lambda values: sum(values)) if how == "sum" else \
                (lambda values: sum(values) / len(values))
            combined["gauges"][short] = {
                "mean": add([item["mean"] for item in found]),
                "min": add([item["min"] for item in found]),
                "max": add([item["max"] for item in found]),
                "scrapes": sum(item["scrapes"] for item in found)}
    for short in COUNTERS:
        found = [part["counters"][short] for part in parts if short in part["counters"]]
        if found:
            combined["counters"][short] = sum(found)
    for short in HISTOGRAMS:
        found = [part["histograms"][short] for part in parts if short in part["histograms"]]
        if found:
            bounds = set.intersection(*(set(item["buckets"]) for item in found))
            combined["histograms"][short] = {
                "buckets": {bound: sum(item["buckets"][bound] for item in found)
                            for bound in bounds},
                "sum": sum(item["sum"] for item in found),
                "count": sum(item["count"] for item in found)}
    busy = [part["busy_slots_per_decode"] for part in parts if "busy_slots_per_decode" in part]
    if busy:
        combined["busy_slots_per_decode"] = sum(busy)
    return _finish(combined)
