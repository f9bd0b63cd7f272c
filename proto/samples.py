"""The sample contract: what executors send to the coordinator's aggregator (data plane).

Executors PUSH msgpack maps over ZeroMQ; the aggregator PULLs them. One map is a *batch*: a
header plus columns, one row per finished request. Columns travel as raw little-endian arrays
(bytes), so encoding and decoding a batch costs a few numpy calls, not a Python call per request.

Header fields (all required):
    v            schema version (SCHEMA_VERSION)
    kind         "samples" ("histograms": a summary instead, see the end of this module)
    run          run id (session id) the batch belongs to
    trial        trial id (recipe.sweep trial id)
    executor     executor id, unique within the run
    node         node name (Slurm node name, or the host name locally)
    seq          0, 1, 2, ... per (run, executor): gaps and duplicates are detected from it
    interval     index of the 1 s interval the batch was cut in (executor clock)
    epoch_ns     time.time_ns() - time.perf_counter_ns() at executor start: adds to any
                 *_ns column to give wall-clock time, so intervals line up across executors
    n            number of requests (rows)
    cols         {column name: bytes}, every REQUEST_COLUMNS name present, each n rows long
    itl_ns       bytes: every inter-chunk gap of every request, flattened in row order; row i
                 owns max(chunks[i] - 1, 0) of them (so offsets are a cumulative sum)

Times are `time.perf_counter_ns()` readings of the executor; a missing time is 0.
Definitions of the metrics derived from them are in DESIGN.md section 4 and docs/metrics.md.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import msgpack
import numpy as np

SCHEMA_VERSION = 1
KIND = "samples"
# A batch never exceeds MAX_MESSAGE_BYTES on the wire: an executor cuts a batch at MAX_ROWS
# requests or MAX_GAPS inter-token gaps (about 1 MB + 32 MB), and the coordinator's socket
# drops any larger message (and its sender's connection) instead of allocating for it.
MAX_ROWS = 20_000
MAX_GAPS = 4_000_000
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_TURNS = 1_000                   # = hpcbench.common.limits.MAX_TURNS (proto is below common)
MAX_CONVERSATION_ID = 2**31 - 1


class ErrorClass(enum.IntEnum):
    """Why a request failed; OK means it did not. Stable numbers: they go on the wire."""

    OK = 0
    HTTP_STATUS = 1        # the server answered with a non-2xx status
    TIMEOUT = 2            # the per-request timeout elapsed (latency recorded = timeout)
    CONNECTION_REFUSED = 3
    CONNECTION_RESET = 4   # connection dropped mid-request or mid-stream
    PROTOCOL = 5           # malformed stream or body
    NO_TOKENS = 6          # HTTP 200 but not one content token
    CANCELLED = 7          # stopped by the executor (trial end, stop command)
    OTHER = 8


class TokenSource(enum.IntEnum):
    """Where tokens_out/tokens_in came from (DESIGN.md section 4: server counts first)."""

    NONE = 0
    SERVER = 1     # OpenAI usage / Ollama eval_count, prompt_eval_count
    COUNTED = 2    # counted content chunks (server gave no usage)
    TOKENIZED = 3  # counted with a tokenizer on the client


class Phase(enum.IntEnum):
    """Part of the trial a request was *scheduled* in; only MEASURED counts in results."""

    WARMUP = 0
    MEASURED = 1
    DRAIN = 2


# name -> numpy dtype (little-endian). Order is the order of columns in files and CSV exports.
REQUEST_COLUMNS: dict[str, str] = {
    "req_id": "<u8",      # per-executor request counter
    "intended_ns": "<i8",  # when the schedule wanted the request sent
    "send_ns": "<i8",      # when the request left (first byte written)
    "first_ns": "<i8",     # first content token/chunk (0: none)
    "end_ns": "<i8",       # response complete, failed or timed out
    "chunks": "<i4",       # content chunks received (ITL gaps = chunks - 1)
    "tokens_in": "<i4",
    "tokens_out": "<i4",
    "token_source": "<u1",  # TokenSource
    "status": "<i2",        # HTTP status (0: none, e.g. connection refused)
    "error": "<u1",         # ErrorClass
    "phase": "<u1",         # Phase
    "slot": "<i4",          # closed loop: concurrency slot; open loop: -1
    # reasoning streams (docs/metrics.md, "Reasoning tokens"); all 0 for plain answers
    "first_reasoning_ns": "<i8",  # first reasoning chunk (0: none)
    "first_answer_ns": "<i8",     # first answer (non-reasoning) chunk (0: none)
    "reasoning_tokens": "<i4",    # of tokens_out: reasoning tokens (server's count, else chunks)
    # multi-turn (workload.conversation); a request outside any conversation: -1, -1, 0
    "conversation": "<i4",  # per-executor conversation number, 0 .. MAX_CONVERSATION_ID
    "turn": "<i2",          # 0-based turn index within it, < turns
    "turns": "<i2",         # the turns it was to have, 1 .. MAX_TURNS
}
# Columns added after schema version 1 was fixed, with the value a batch without them (an
# older executor, a samples file written before) reads: no reasoning content, no conversation.
OPTIONAL_COLUMNS: dict[str, int] = {"first_reasoning_ns": 0, "first_answer_ns": 0,
                                    "reasoning_tokens": 0, "conversation": -1, "turn": -1,
                                    "turns": 0}
HEADER_FIELDS = ("v", "kind", "run", "trial", "executor", "node", "seq", "interval", "epoch_ns",
                 "n", "cols", "itl_ns")


class SampleBatchError(ValueError):
    """A batch that breaks the contract; the aggregator counts and reports it, never crashes."""


@dataclass
class SampleBatch:
    """A decoded batch: header values plus numpy columns (views on the received bytes)."""

    run: str
    trial: str
    executor: str
    node: str
    seq: int
    interval: int
    epoch_ns: int
    columns: dict[str, np.ndarray]
    itl_ns: np.ndarray

    @property
    def n(self) -> int:
        return len(self.columns["req_id"])

    def itl_offsets(self) -> np.ndarray:
        """Start offset of each row's gaps in `itl_ns` (length n + 1)."""
        gaps = np.maximum(self.columns["chunks"].astype(np.int64) - 1, 0)
        return np.concatenate(([0], np.cumsum(gaps)))


def encode(batch: SampleBatch) -> bytes:
    """Pack a batch for the wire. Columns are converted to the contract's dtypes."""
    n = batch.n
    cols = {}
    for name, dtype in REQUEST_COLUMNS.items():
        column = np.ascontiguousarray(batch.columns[name], dtype=dtype)
        if len(column) != n:
            raise SampleBatchError(f"column {name!r} has {len(column)} rows, expected {n}")
        cols[name] = column.tobytes()
    itl = np.ascontiguousarray(batch.itl_ns, dtype="<i8")
    return msgpack.packb({
        "v": SCHEMA_VERSION, "kind": KIND, "run": batch.run, "trial": batch.trial,
        "executor": batch.executor, "node": batch.node, "seq": batch.seq,
        "interval": batch.interval, "epoch_ns": batch.epoch_ns, "n": n, "cols": cols,
        "itl_ns": itl.tobytes(),
    }, use_bin_type=True)


def decode(payload: bytes) -> SampleBatch:
    """Unpack and check a batch; anything off raises SampleBatchError naming the problem."""
    try:
        message = msgpack.unpackb(payload, raw=False, max_bin_len=1 << 30, max_str_len=1 << 16)
    except Exception as error:  # msgpack raises several unrelated types for garbage
        raise SampleBatchError(f"not a msgpack message: {error}") from None
    return from_message(message)


def from_message(message: object) -> SampleBatch:
    """Check an already-unpacked message (the aggregator peeks at `kind` first)."""
    if not isinstance(message, dict):
        raise SampleBatchError(f"batch must be a map, got {type(message).__name__}")
    missing = [field for field in HEADER_FIELDS if field not in message]
    if missing:
        raise SampleBatchError(f"batch lacks header fields {missing}")
    if message["v"] != SCHEMA_VERSION:
        raise SampleBatchError(f"schema version {message['v']!r} is not {SCHEMA_VERSION}")
    if message["kind"] != KIND:
        raise SampleBatchError(f"kind {message['kind']!r} is not {KIND!r}")
    for field in ("run", "trial", "executor", "node"):
        if not isinstance(message[field], str):
            raise SampleBatchError(f"header field {field!r} must be a string")
    for field in ("seq", "interval", "epoch_ns", "n"):
        if not isinstance(message[field], int) or isinstance(message[field], bool):
            raise SampleBatchError(f"header field {field!r} must be an integer")
    n = message["n"]
    if n < 0 or message["seq"] < 0:
        raise SampleBatchError("n and seq must not be negative")
    raw_cols = message["cols"]
    if not isinstance(raw_cols, dict):
        raise SampleBatchError("cols must be a map of column name to bytes")
    columns = {}
    for name, dtype in REQUEST_COLUMNS.items():
        raw = raw_cols.get(name)
        if raw is None and name in OPTIONAL_COLUMNS:
            columns[name] = np.full(n, OPTIONAL_COLUMNS[name], dtype=dtype)
            continue
        if not isinstance(raw, bytes):
            raise SampleBatchError(f"column {name!r} missing or not bytes")
        width = np.dtype(dtype).itemsize
        if len(raw) != n * width:
            raise SampleBatchError(f"column {name!r} has {len(raw)} bytes, expected {n * width}")
        columns[name] = np.frombuffer(raw, dtype=dtype)
    reasoning = columns["reasoning_tokens"]
    if ((reasoning < 0) | (reasoning > np.maximum(columns["tokens_out"], 0))).any():
        raise SampleBatchError("reasoning_tokens must be 0 .. tokens_out in every row")
    raw_itl = message["itl_ns"]
    if not isinstance(raw_itl, bytes) or len(raw_itl) % 8:
        raise SampleBatchError("itl_ns must be bytes of int64 values")
    _check_conversations(columns)
    itl = np.frombuffer(raw_itl, dtype="<i8")
    expected_gaps = int(np.maximum(columns["chunks"].astype(np.int64) - 1, 0).sum())
    if len(itl) != expected_gaps:
        raise SampleBatchError(f"itl_ns has {len(itl)} gaps, chunks say {expected_gaps}")
    return SampleBatch(run=message["run"], trial=message["trial"], executor=message["executor"],
                       node=message["node"], seq=message["seq"], interval=message["interval"],
                       epoch_ns=message["epoch_ns"], columns=columns, itl_ns=itl)


def _check_conversations(columns: dict[str, np.ndarray]) -> None:
    """Conversation columns within their bounds: a row is in no conversation (-1, -1, 0) or
    is turn 0 <= turn < turns <= MAX_TURNS of conversation >= 0."""
    conversation, turn, turns = columns["conversation"], columns["turn"], columns["turns"]
    single = (conversation == -1) & (turn == -1) & (turns == 0)
    in_one = (conversation >= 0) & (turn >= 0) & (turn < turns) & (turns <= MAX_TURNS)
    if not (single | in_one).all():
        raise SampleBatchError("conversation/turn/turns columns out of bounds: each row needs "
                               "-1/-1/0 or 0 <= turn < turns <= "
                               f"{MAX_TURNS} with conversation >= 0")


def empty_columns(n: int = 0) -> dict[str, np.ndarray]:
    """Columns of the right dtypes for building batches: zeros, except the optional columns,
    which hold their "absent" value (no conversation: -1, -1, 0)."""
    return {name: np.full(n, OPTIONAL_COLUMNS.get(name, 0), dtype=dtype)
            for name, dtype in REQUEST_COLUMNS.items()}


# -- histogram mode: one interval's merged statistics instead of its rows ------------------------
#
# At scale (docs/scale.md) an executor keeps its raw batches in a file on its node and sends,
# for each batch it would have sent, one *summary* with the same header and sequence number:
# the batch's metric values as bucket counts of the run's one HDR configuration, plus every
# counter the aggregator keeps. Summaries merge exactly (bucket counts add), so the coordinator's
# histograms are the ones raw batches would have given.
#
# Fields beyond the shared header (v, kind, run, trial, executor, node, seq, interval, epoch_ns):
#     n            request rows of the batch it summarises (any phase), for accounting
#     samples      rows plus inter-token gaps of that batch (the aggregator's `samples` unit)
#     hdr          [lowest, highest, significant_digits]: the histogram configuration
#     counts       {name: int} for every COUNT_FIELDS name
#     errors       bytes, <i8 per ErrorClass; token_sources: bytes, <i8 per TokenSource
#     first_ns     wall-clock earliest intended time of a measured row (nil: none)
#     last_ns      wall-clock latest end of a measured row (nil: none)
#     unstored     "" or why the node could not store the batch's raw rows (counted as loss)
#     metrics      {metric: {count, total, min, max, clamped, rejected, idx, cnt}}: idx the
#                  filled bucket indices (bytes, <u4, strictly increasing), cnt their counts
#                  (bytes, <i8, each > 0, summing to count)
SUMMARY_KIND = "histograms"
SUMMARY_FIELDS = ("v", "kind", "run", "trial", "executor", "node", "seq", "interval", "epoch_ns",
                  "n", "samples", "hdr", "counts", "errors", "token_sources", "first_ns",
                  "last_ns", "unstored", "metrics")
# the counters of common/measure/definitions.BatchMetrics a summary carries, by their names there
COUNT_FIELDS = ("requests", "ok", "good", "input_tokens", "output_tokens", "reasoning_tokens",
                "warmup", "drain")
BUCKET_FIELDS = ("count", "total", "min", "max", "clamped", "rejected", "idx", "cnt")
MAX_SUMMARY_METRICS = 16
MAX_SUMMARY_BUCKETS = 1 << 20     # filled buckets of one metric (a configuration has fewer)
MAX_SUMMARY_COUNT = 1 << 48       # values of one metric in one summary (sums stay exact)


@dataclass
class MetricBuckets:
    """One metric's histogram of one summary: its filled buckets and exact totals."""

    count: int
    total: float
    min: int | None
    max: int | None
    clamped: int
    rejected: int
    indices: np.ndarray     # filled bucket indices, increasing
    counts: np.ndarray      # count per filled bucket


@dataclass
class SampleSummary:
    """A decoded histogram-mode message: the batch header plus merged statistics."""

    run: str
    trial: str
    executor: str
    node: str
    seq: int
    interval: int
    epoch_ns: int
    n: int
    samples: int
    hdr: tuple[int, int, int]
    counts: dict[str, int]
    errors: np.ndarray
    token_sources: np.ndarray
    first_ns: int | None
    last_ns: int | None
    unstored: str
    metrics: dict[str, MetricBuckets]


def encode_summary(summary: SampleSummary) -> bytes:
    """Pack a summary for the wire (arrays as little-endian bytes)."""
    return msgpack.packb({
        "v": SCHEMA_VERSION, "kind": SUMMARY_KIND, "run": summary.run, "trial": summary.trial,
        "executor": summary.executor, "node": summary.node, "seq": summary.seq,
        "interval": summary.interval, "epoch_ns": summary.epoch_ns, "n": summary.n,
        "samples": summary.samples, "hdr": list(summary.hdr), "counts": summary.counts,
        "errors": np.ascontiguousarray(summary.errors, dtype="<i8").tobytes(),
        "token_sources": np.ascontiguousarray(summary.token_sources, dtype="<i8").tobytes(),
        "first_ns": summary.first_ns, "last_ns": summary.last_ns, "unstored": summary.unstored,
        "metrics": {name: {"count": buckets.count, "total": float(buckets.total),
                           "min": buckets.min, "max": buckets.max,
                           "clamped": buckets.clamped, "rejected": buckets.rejected,
                           "idx": np.ascontiguousarray(buckets.indices, dtype="<u4").tobytes(),
                           "cnt": np.ascontiguousarray(buckets.counts, dtype="<i8").tobytes()}
                    for name, buckets in summary.metrics.items()},
    }, use_bin_type=True)


def _integer(value: object, field: str, minimum: int | None = 0, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise SampleBatchError(f"summary field {field!r} must be an integer")
    if minimum is not None and value < minimum:
        raise SampleBatchError(f"summary field {field!r} must be >= {minimum}, got {value}")
    return value


def _counter_array(raw: object, field: str, length: int) -> np.ndarray:
    if not isinstance(raw, bytes) or len(raw) != 8 * length:
        raise SampleBatchError(f"summary field {field!r} must be {length} int64 values")
    values = np.frombuffer(raw, dtype="<i8")
    if (values < 0).any():
        raise SampleBatchError(f"summary field {field!r} holds a negative count")
    return values


def _metric_buckets(name: str, raw: object) -> MetricBuckets:
    if not isinstance(raw, dict) or set(raw) != set(BUCKET_FIELDS):
        raise SampleBatchError(f"metric {name!r} must be a map of exactly {BUCKET_FIELDS}")
    idx, cnt = raw["idx"], raw["cnt"]
    if not isinstance(idx, bytes) or not isinstance(cnt, bytes) or len(idx) % 4 \
            or len(cnt) != 2 * len(idx) or len(idx) // 4 > MAX_SUMMARY_BUCKETS:
        raise SampleBatchError(f"metric {name!r}: idx (u4) and cnt (i8) must be bytes of the "
                               f"same length, at most {MAX_SUMMARY_BUCKETS} buckets")
    indices, counts = np.frombuffer(idx, dtype="<u4"), np.frombuffer(cnt, dtype="<i8")
    if len(indices) > 1 and (np.diff(indices.astype(np.int64)) <= 0).any():
        raise SampleBatchError(f"metric {name!r}: bucket indices must be strictly increasing")
    if (counts <= 0).any() or (counts > MAX_SUMMARY_COUNT).any():
        raise SampleBatchError(f"metric {name!r}: bucket counts must be 1..{MAX_SUMMARY_COUNT}")
    count = _integer(raw["count"], f"{name}.count")
    if count > MAX_SUMMARY_COUNT:
        raise SampleBatchError(f"metric {name!r}: count {count} exceeds {MAX_SUMMARY_COUNT}")
    if int(counts.sum()) != count:
        raise SampleBatchError(f"metric {name!r}: buckets hold {int(counts.sum())} values, "
                               f"count says {count}")
    low = _integer(raw["min"], f"{name}.min", allow_none=True)
    high = _integer(raw["max"], f"{name}.max", allow_none=True)
    if (low is None) != (count == 0) or (high is None) != (count == 0) or \
            (count and low > high):
        raise SampleBatchError(f"metric {name!r}: min/max must be set, min <= max, exactly "
                               "when it has values")
    total = raw["total"]
    if not isinstance(total, (int, float)) or isinstance(total, bool) or \
            not 0 <= total < math.inf:
        raise SampleBatchError(f"metric {name!r}: total must be a finite number >= 0")
    return MetricBuckets(count=count, total=float(total), min=low, max=high,
                         clamped=_integer(raw["clamped"], f"{name}.clamped"),
                         rejected=_integer(raw["rejected"], f"{name}.rejected"),
                         indices=indices, counts=counts)


def summary_from_message(message: object) -> SampleSummary:
    """Check an unpacked histogram-mode message; SampleBatchError names what is wrong. What
    needs the histogram configuration (bucket indices within it, metric names) is checked
    where it is merged (hpcbench.common.measure.summaries)."""
    if not isinstance(message, dict):
        raise SampleBatchError(f"summary must be a map, got {type(message).__name__}")
    missing = [field for field in SUMMARY_FIELDS if field not in message]
    if missing:
        raise SampleBatchError(f"summary lacks fields {missing}")
    if message["v"] != SCHEMA_VERSION or message["kind"] != SUMMARY_KIND:
        raise SampleBatchError(f"summary version/kind {message['v']!r}/{message['kind']!r} is "
                               f"not {SCHEMA_VERSION}/{SUMMARY_KIND!r}")
    for field in ("run", "trial", "executor", "node", "unstored"):
        if not isinstance(message[field], str):
            raise SampleBatchError(f"summary field {field!r} must be a string")
    for field in ("seq", "interval", "n", "samples"):
        _integer(message[field], field)
    _integer(message["epoch_ns"], "epoch_ns", minimum=None)
    hdr = message["hdr"]
    if not isinstance(hdr, list) or len(hdr) != 3:
        raise SampleBatchError("summary field 'hdr' must be [lowest, highest, digits]")
    hdr = tuple(_integer(value, "hdr", minimum=1) for value in hdr)
    counts = message["counts"]
    if not isinstance(counts, dict) or set(counts) != set(COUNT_FIELDS):
        raise SampleBatchError(f"summary field 'counts' must map exactly {COUNT_FIELDS}")
    counts = {name: _integer(counts[name], f"counts.{name}") for name in COUNT_FIELDS}
    if (message["first_ns"] is None) != (message["last_ns"] is None):
        raise SampleBatchError("summary fields 'first_ns' and 'last_ns' must both be set or "
                               "both be nil")
    metrics = message["metrics"]
    if not isinstance(metrics, dict) or len(metrics) > MAX_SUMMARY_METRICS or \
            not all(isinstance(name, str) and len(name) <= 32 for name in metrics):
        raise SampleBatchError(f"summary field 'metrics' must map at most "
                               f"{MAX_SUMMARY_METRICS} metric names to buckets")
    return SampleSummary(
        run=message["run"], trial=message["trial"], executor=message["executor"],
        node=message["node"], seq=message["seq"], interval=message["interval"],
        epoch_ns=message["epoch_ns"], n=message["n"], samples=message["samples"], hdr=hdr,
        counts=counts, errors=_counter_array(message["errors"], "errors", len(ErrorClass)),
        token_sources=_counter_array(message["token_sources"], "token_sources",
                                     len(TokenSource)),
        first_ns=_integer(message["first_ns"], "first_ns", None, allow_none=True),
        last_ns=_integer(message["last_ns"], "last_ns", None, allow_none=True),
        unstored=message["unstored"],
        metrics={name: _metric_buckets(name, raw) for name, raw in metrics.items()})
