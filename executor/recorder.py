"""SampleRecorder: finished requests -> columnar SampleBatch objects (proto/samples.py).

Recording a request extends one int64 `array` with its 16 values and another with its chunk
times (one C call each on the hot path). Cutting a batch wraps those buffers as numpy arrays
without copying and computes the flattened ITL gaps with vector operations, so the event loop
never pauses to convert thousands of Python objects (which would delay the timestamps of
tokens arriving meanwhile).
"""
from __future__ import annotations

from array import array

import numpy as np

from hpcbench.proto.samples import MAX_GAPS, MAX_ROWS, SampleBatch

# Row fields in the order `add` appends them (as in REQUEST_COLUMNS).
_FIELDS = ("req_id", "intended_ns", "send_ns", "first_ns", "end_ns", "chunks", "tokens_in",
           "tokens_out", "token_source", "status", "error", "phase", "slot",
           "first_reasoning_ns", "first_answer_ns", "reasoning_tokens", "conversation",
           "turn", "turns")
_CHUNKS = _FIELDS.index("chunks")


class SampleRecorder:
    def __init__(self, run: str, trial: str, executor: str, node: str, epoch_ns: int) -> None:
        self.header = dict(run=run, trial=trial, executor=executor, node=node, epoch_ns=epoch_ns)
        self.seq = 0
        self._rows = array("q")          # len(_FIELDS) values per request, row after row
        self._chunk_times = array("q")
        self.recorded = 0

    def __len__(self) -> int:
        return len(self._rows) // len(_FIELDS)

    @property
    def pending_gaps(self) -> int:
        """Chunk times recorded since the last cut (a bound on the next batch's ITL gaps)."""
        return len(self._chunk_times)

    def add(self, attempt) -> None:
        times = attempt.chunk_times
        self._rows.extend((attempt.req_id, attempt.intended_ns, attempt.send_ns,
                           times[0] if times else 0, attempt.end_ns, len(times),
                           attempt.tokens_in, attempt.tokens_out, attempt.token_source,
                           attempt.status, attempt.error, attempt.phase, attempt.slot,
                           attempt.first_reasoning_ns, attempt.first_answer_ns,
                           attempt.reasoning_tokens, attempt.conversation, attempt.turn,
                           attempt.turns))
        self._chunk_times.extend(times)
        self.recorded += 1

    def cut(self, interval: int) -> SampleBatch | None:
        """The oldest rows recorded since the last cut as one batch (None when there are none):
        all of them, or as many as fit the sample contract's bounds (MAX_ROWS requests,
        MAX_GAPS chunk times), the rest left for the next cut. A caller cuts until None."""
        if not self._rows:
            return None
        table = np.frombuffer(self._rows, dtype=np.int64).reshape(-1, len(_FIELDS))
        chunk_ends = np.cumsum(table[:, _CHUNKS])          # chunk times through each row
        rows = min(len(table), MAX_ROWS,
                   max(int(np.searchsorted(chunk_ends, MAX_GAPS, side="right")), 1))
        times_used = int(chunk_ends[rows - 1])
        if rows == len(table):
            taken, times = self._rows, self._chunk_times
            self._rows, self._chunk_times = array("q"), array("q")
        else:    # rare: a flood of requests finished at once; split at the bounds
            split = rows * len(_FIELDS)
            taken, self._rows = self._rows[:split], self._rows[split:]
            times, self._chunk_times = (self._chunk_times[:times_used],
                                        self._chunk_times[times_used:])
        table = np.frombuffer(taken, dtype=np.int64).reshape(-1, len(_FIELDS))
        columns = {name: table[:, index] for index, name in enumerate(_FIELDS)}
        batch = SampleBatch(seq=self.seq, interval=interval, columns=columns,
                            itl_ns=_gaps(np.frombuffer(times, dtype=np.int64), columns["chunks"]),
                            **self.header)
        self.seq += 1
        return batch


def _gaps(times: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    """Consecutive differences within each row's chunk times (row boundaries dropped)."""
    if len(times) < 2:
        return np.zeros(0, dtype=np.int64)
    gaps = np.diff(times)
    starts = np.cumsum(chunks)[:-1]          # index in `times` where each next row begins
    starts = starts[(starts > 0) & (starts < len(times))]
    keep = np.ones(len(gaps), dtype=bool)
    keep[starts - 1] = False                 # gap from a row's last chunk to the next's first
    return gaps[keep]
