"""Multi-turn metrics: per turn index and per conversation, from a trial's raw sample rows.

A row of a conversation turn carries `conversation` (per executor), `turn` (0-based) and
`turns` (how many the conversation was to have); a conversation is the rows of one
(executor, conversation). Definitions (docs/metrics.md, "Conversations"):

- Per turn index (measured rows of that turn, whichever conversation they belong to): requests,
  ok, errors, mean input and output tokens of the ok ones (the input grows with the history),
  and exact TTFT and E2E statistics under the same row rules as the trial's (definitions.py).
- Per conversation, counting those whose first turn was scheduled in the measured window:
  `completed` (every turn answered), `failed` (a turn failed, which ends the conversation:
  its history would lack that answer), `cut` (the trial's window ended or its request count
  was reached before the last turn was due: neither failed nor complete). Duration of a
  completed conversation = end of its last answer - intended time of its first turn (think
  times included); turns completed = answered turns of each counted conversation.
"""
from __future__ import annotations

import numpy as np

from hpcbench.common.measure.definitions import MISSING, request_latencies
from hpcbench.common.measure.statistics import exact_stats
from hpcbench.proto.samples import ErrorClass, Phase, SampleBatch

# the columns the metrics read, besides the ones request_latencies reads
# what request_latencies reads, plus the conversation columns
_COLUMNS = ("conversation", "turn", "turns", "phase", "error", "intended_ns", "send_ns",
            "first_ns", "end_ns", "tokens_in", "tokens_out", "slot", "chunks",
            "first_reasoning_ns", "first_answer_ns")
_OK, _MEASURED = int(ErrorClass.OK), int(Phase.MEASURED)


class ConversationRows:
    """Collects the conversation rows of a trial's batches (`add`), then `metrics()`."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in (*_COLUMNS, "owner")}
        self._owners: dict[str, int] = {}

    def add(self, batch: SampleBatch) -> None:
        keep = batch.columns["conversation"] >= 0
        if not keep.any():
            return
        for name in _COLUMNS:
            self._parts[name].append(batch.columns[name][keep])
        owner = self._owners.setdefault(batch.executor, len(self._owners))
        self._parts["owner"].append(np.full(int(keep.sum()), owner, np.int64))

    def metrics(self) -> dict | None:
        """The trial's conversation metrics (None: it had no conversation rows)."""
        if not self._parts["owner"]:
            return None
        columns = {name: np.concatenate(parts) for name, parts in self._parts.items()}
        return conversation_metrics(columns)


def conversation_metrics(columns: dict[str, np.ndarray]) -> dict:
    """Metrics of conversation rows (`owner`: which executor's conversation numbering)."""
    latencies = request_latencies(columns)
    measured = columns["phase"] == _MEASURED
    ok = columns["error"] == _OK
    turns = []
    for turn in np.unique(columns["turn"][measured]).tolist():
        rows = measured & (columns["turn"] == turn)
        good = rows & ok
        turns.append({
            "turn": turn + 1, "requests": int(rows.sum()), "ok": int(good.sum()),
            "errors": int(rows.sum() - good.sum()),
            "input_tokens_mean": _mean(columns["tokens_in"][good]),
            "output_tokens_mean": _mean(columns["tokens_out"][good]),
            **{name: exact_stats(values[rows & (values != MISSING)])
               for name, values in (("ttft", latencies["ttft"]), ("e2e", latencies["e2e"]))}})
    return {"turns": turns, **_per_conversation(columns)}


def _per_conversation(columns: dict[str, np.ndarray]) -> dict:
    order = np.lexsort((columns["turn"], columns["conversation"], columns["owner"]))
    table = {name: values[order] for name, values in columns.items()}
    key = table["owner"] * (1 << 32) + table["conversation"]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    ends = np.concatenate((starts[1:], [len(key)])) - 1       # each one's last row
    first_turn_measured = (table["turn"][starts] == 0) & (table["phase"][starts] == _MEASURED)
    failed_rows = (table["error"] != _OK).astype(np.int64)
    failed = np.add.reduceat(failed_rows, starts) > 0
    answered = np.add.reduceat(1 - failed_rows, starts)
    complete = ~failed & (answered == table["turns"][starts])
    counted = first_turn_measured
    completed = counted & complete
    durations = (table["end_ns"][ends] - table["intended_ns"][starts])[completed]
    return {
        "started": int(counted.sum()), "completed": int(completed.sum()),
        "failed": int((counted & failed).sum()),
        "cut": int((counted & ~failed & ~complete).sum()),
        "turns_planned_mean": _mean(table["turns"][starts][counted]),
        "turns_completed_mean": _mean(answered[counted]),
        "duration": exact_stats(durations),
    }


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None
