"""Trial directories written through the real results writer and aggregator, with a verdict
(unit tests of results, attempts and session.json)."""
from __future__ import annotations

from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.session import verdicts
from hpcbench.coordinator.session.results import ResultsWriter
from hpcbench.proto.samples import encode
from tests.support.sample_batches import make_batch

RUN = "run-1"


def run_trial(writer: ResultsWriter, trial_id: str, batches: int = 4, recipe=None,
              problems: tuple[str, ...] = (), session_run: int = 1):
    """Aggregate `batches` batches into a trial and finish it with the verdict `problems`
    make (none: passed); returns (trial dir, payloads)."""
    aggregator = Aggregator(run_id=RUN)
    trial = writer.open_trial(trial_id, recipe or {"trial": trial_id, "workload": {"rate": 5}},
                              session_run=session_run)
    aggregator.open_trial(trial_id, slos_s={"ttft": 1.0}, sink=trial)
    payloads = [encode(make_batch(seq, 50, trial=trial_id)) for seq in range(batches)]
    for number, payload in enumerate(payloads):
        aggregator.ingest(payload)
        if number % 2:
            aggregator.snapshot()
    aggregator.ingest(payloads[0])  # a duplicate: counted, not stored twice
    verdict = verdicts.verdict_record(list(problems), 0.01)
    return trial.finish(aggregator.close_trial(trial_id), verdict), payloads
