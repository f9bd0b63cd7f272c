"""The sample contract: what executors send to the coordinator's aggregator (data plane).

Executors PUSH msgpack maps over ZeroMQ; the aggregator PULLs them. One map is a *batch*: a
header plus columns, one row per finished request. Columns travel as raw little-endian arrays
(bytes), so encoding and decoding a batch costs a few numpy calls, not a Python call per request.

Header fields (all required):
    v            schema version (SCHEMA_VERSION)
    kind         "samples"
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
