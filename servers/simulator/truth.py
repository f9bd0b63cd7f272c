"""Ground truth: one record per generation request, with the server-side time of each token write.

A record holds the request's ids (`id` as sent to the client, `client_request_id` from an
`X-Request-Id` header), `api`, `stream`, `outcome` (served, error, disconnect, no_token,
cancelled), token counts, `arrival_perf_ns`/`arrival_time_ns`, and `token_perf_ns`/`token_time_ns`: the
`time.perf_counter_ns()` and `time.time_ns()` taken just before each token chunk was written.
perf_counter_ns is comparable with a client's readings on the same machine (same clock).
With `stream: false` the token times are when each token was generated (the body is written
once, at the end).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import IO


class TruthLog:
    """Collects records in memory (`records`) and/or appends them to a JSONL file."""

    def __init__(self, keep: bool = True, path: str | Path | None = None) -> None:
        self.records: list[dict] | None = [] if keep else None
        self._file: IO[str] | None = open(path, "w", encoding="utf-8") if path else None

    def add(self, record: dict) -> None:
        if self.records is not None:
            self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def dump_jsonl(records: list[dict], path: str | Path) -> None:
    """Write records as JSON lines (temp file + rename, so a reader never sees half a file)."""
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    temporary.replace(target)
