"""Where sample batches go: ZeroMQ PUSH to the coordinator, or a file (standalone mode).

Encoding and I/O run on one background thread per sink so the event loop keeps its timing;
`send(batch, encode)` names how a batch becomes wire bytes (raw by default; histogram mode's
`NodeSamples.encode` keeps the rows on the node and sends a summary), and `wait_written` waits
until everything handed over has been written (a trial's raw file is then complete).
Nothing is dropped: the hand-off queue is bounded, and when it is full `send` blocks the caller
(back-pressure), exactly like a PUSH socket at its high-water mark; the socket itself sends
blocking and lingers on close until everything queued has left.

File format: a sequence of frames, each a 4-byte little-endian length then one encoded batch
(`proto/samples.encode`); `read_batches(path)` reads it back.
"""
from __future__ import annotations

import queue
import struct
import threading
from pathlib import Path
from typing import Callable, Iterator

from hpcbench.proto import samples
from hpcbench.proto.samples import SampleBatch

QUEUE_BATCHES = 64
_LENGTH = struct.Struct("<I")
_STOP = object()


class _BackgroundSink:
    """Runs `_write(payload)` for every batch, in order, on its own thread."""

    def __init__(self, name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self.batches = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Batches handed over but not yet written (QUEUE_BATCHES: `send` now blocks)."""
        return self._queue.qsize()

    def send(self, batch: SampleBatch, encode: Callable[[SampleBatch], bytes] = samples.encode
             ) -> None:
        if self.error is not None:
            raise RuntimeError(f"sample sink failed: {self.error}") from self.error
        self._queue.put((batch, encode))
        self.batches += 1

    def wait_written(self) -> None:
        """Return once every batch sent so far is encoded and written (or the sink failed)."""
        self._queue.join()
        if self.error is not None:
            raise RuntimeError(f"sample sink failed: {self.error}") from self.error

    def close(self) -> None:
        """Write everything queued, then release the resource."""
        self._queue.put(_STOP)
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"sample sink failed: {self.error}") from self.error

    def _drain(self) -> None:
        try:
            while (item := self._queue.get()) is not _STOP:
                try:
                    batch, encode = item
                    self._write(encode(batch))
                finally:
                    self._queue.task_done()
        except BaseException as error:   # reported by the next send/close
            self.error = error
            while self._queue.get() is not _STOP:
                self._queue.task_done()
        finally:
            self._queue.task_done()
            self._release()

    def _write(self, payload: bytes) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


class ZmqSink(_BackgroundSink):
    """PUSH batches to the coordinator's PULL endpoint (e.g. tcp://10.0.0.1:5557)."""

    def __init__(self, endpoint: str, sndhwm: int = 1000, linger_ms: int = 30_000,
                 curve=None, context=None) -> None:
        """`curve`: the session's hpcbench.common.curve.CurveKeys when CURVE is on.
        `context`: a ZeroMQ context to share (e.g. for inproc:// endpoints; its owner
        terminates it); by default the sink makes its own and terminates it on close, which
        is what waits (up to linger_ms) until every queued batch has left: a process exiting
        with a shared context drops what is queued."""
        import zmq

        from hpcbench.common import sockets

        self._own_context = zmq.Context() if context is None else None
        try:
            self._socket = sockets.connect(zmq.PUSH, endpoint, hwm=sndhwm, linger_ms=linger_ms,
                                           curve=curve, context=context or self._own_context)
        except BaseException:   # e.g. E006 for a malformed endpoint: leave no context behind
            if self._own_context is not None:
                self._own_context.term()
            raise
        super().__init__(f"zmq-sink {endpoint}")

    def _write(self, payload: bytes) -> None:
        self._socket.send(payload, copy=False)   # blocks at the high-water mark, never drops

    def _release(self) -> None:
        self._socket.close()
        if self._own_context is not None:
            self._own_context.term()


class FileSink(_BackgroundSink):
    """Append length-prefixed batches to a file (created or truncated)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "wb")
        super().__init__(f"file-sink {self.path}")

    def _write(self, payload: bytes) -> None:
        self._file.write(_LENGTH.pack(len(payload)))
        self._file.write(payload)

    def _release(self) -> None:
        self._file.close()


class MemorySink:
    """Keeps batches in a list: for in-process users (tests, bench) that read them right away."""

    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def send(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def close(self) -> None:
        pass


def read_batches(path: str | Path) -> Iterator[SampleBatch]:
    """Decode every batch of a FileSink file; a truncated last frame raises SampleBatchError."""
    with open(path, "rb") as handle:
        while header := handle.read(_LENGTH.size):
            if len(header) < _LENGTH.size:
                raise samples.SampleBatchError(f"{path}: truncated frame header")
            (length,) = _LENGTH.unpack(header)
            payload = handle.read(length)
            if len(payload) < length:
                raise samples.SampleBatchError(f"{path}: truncated frame ({len(payload)} of "
                                               f"{length} bytes)")
            yield samples.decode(payload)
