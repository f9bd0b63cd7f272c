"""Histogram mode on the executor: raw rows stay in a file on the node, summaries go out.

`NodeSamples.encode` replaces the sink's raw encoding for one trial (it runs on the sink's
thread): it appends the batch, encoded as on the wire, to the trial's per-executor raw file
(`raw_file.partial`, the same concatenated msgpack batches as the trial's samples.msgpack) and
returns the batch's summary (hpcbench.common.measure.summaries) to send instead. `close`
flushes, fsyncs and renames the file to `raw_file`, so the coordinator, which gathers it into
samples.msgpack when the trial ends, never reads a half-written file. A batch whose rows could
not be written says so in its summary (`unstored`), and from the first failed write on the file
is left as `.partial`: the coordinator counts every row it lacks as unstored, none silently.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hpcbench.common.measure import definitions
from hpcbench.common.measure.buckets import HistogramConfig
from hpcbench.common.measure.summaries import summarise
from hpcbench.proto import samples
from hpcbench.proto.samples import SampleBatch

PARTIAL = ".partial"
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)


class NodeSamples:
    """One trial's raw file on the node and the summaries of what went into it."""

    def __init__(self, raw_file: str | Path, slos_s: dict[str, float] | None,
                 config: HistogramConfig | None = None) -> None:
        self.raw_file = Path(raw_file)
        self._partial = self.raw_file.with_name(self.raw_file.name + PARTIAL)
        self.config = config or HistogramConfig()
        self.slos_ns = definitions.slos_to_ns(slos_s)
        self.failure = ""        # why the raw file stopped taking rows ("" while it is whole)
        self._file = None
        try:   # never through a planted symlink (common/files.py's rule)
            descriptor = os.open(self._partial, _APPEND, 0o644)
            self._file = os.fdopen(descriptor, "ab")
        except OSError as error:
            self.failure = f"cannot open {self._partial}: {error}"

    def encode(self, batch: SampleBatch) -> bytes:
        """Keep the batch's rows in the raw file; the wire bytes of its summary."""
        payload = samples.encode(batch)
        if not self.failure:
            try:
                self._file.write(payload)
            except OSError as error:
                self.failure = f"writing {self._partial}: {error}"
        return samples.encode_summary(summarise(batch, self.config, self.slos_ns,
                                                unstored=self.failure))

    def close(self) -> None:
        """Finish the raw file: fsynced and renamed to `raw_file` unless a write failed (the
        coordinator then finds no whole file and counts every row it lacks as unstored)."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.flush()
            os.fsync(file.fileno())
        except OSError as error:
            self.failure = self.failure or f"finishing {self._partial}: {error}"
        finally:
            with contextlib.suppress(OSError):
                file.close()
        if not self.failure:
            try:
                os.replace(self._partial, self.raw_file)
            except OSError as error:
                self.failure = f"renaming {self._partial}: {error}"
