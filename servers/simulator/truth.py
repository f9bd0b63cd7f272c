"""Ground truth: one record per generation request, with the server-side time of each token write.

A record holds the request's ids (`id` as sent to the client, `client_request_id` from an
`X-Request-Id` header), `api`, `stream`, `outcome` (served, error, disconnect, no_token,
cancelled), token counts (summed over the prompts of a batched completions request; `prompts`
and `finish_reasons`, one per choice, tell them apart), `arrival_perf_ns`/`arrival_time_ns` (when
the request's first bytes reached this host, by the kernel's receive stamp (transport.py): the
time it waited in the socket buffer and the simulator's own parse time are server time, not the
client's), and `token_perf_ns`/`token_time_ns`: the
`time.perf_counter_ns()` and `time.time_ns()` taken just before each token chunk was written.
perf_counter_ns is comparable with a client's readings on the same machine (same clock).
With `stream: false` the token times are when each token was generated (the body is written
once, at the end).
"""
from __future__ import annotations

import json
import os
from pathlib import Path


class TruthLog:
    """Collects records in memory (`records`) and/or appends them to a JSONL file.

    File lines are written whole, in one `write` per flush on an O_APPEND descriptor, so several
    worker processes can share one file without interleaving parts of lines.
    """

    FLUSH_EVERY = 1000   # lines; `flush()` is also called about once a second by the server

    def __init__(self, keep: bool = True, path: str | Path | None = None,
                 truncate: bool = True) -> None:
        self.records: list[dict] | None = [] if keep else None
        self._pending: list[str] = []
        self._fd: int | None = None
        if path:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
            self._fd = os.open(path, flags, 0o644)

    def add(self, record: dict) -> None:
        if self.records is not None:
            self.records.append(record)
        if self._fd is not None:
            self._pending.append(json.dumps(record, separators=(",", ":")) + "\n")
            if len(self._pending) >= self.FLUSH_EVERY:
                self.flush()

    def flush(self) -> None:
        if self._fd is not None and self._pending:
            os.write(self._fd, "".join(self._pending).encode())
            self._pending.clear()

    def close(self) -> None:
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None


def dump_jsonl(records: list[dict], path: str | Path) -> None:
    """Write records as JSON lines (temp file + rename, so a reader never sees half a file)."""
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    temporary.replace(target)
