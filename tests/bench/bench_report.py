"""Report figures: CPU time to build report.html and to export every request, for a run of
2 trials x 100,000 requests of 16-token streams (3.2 M samples in all).

The run directory is written with the real results API (coordinator/session/results.py) from an
aggregator fed synthetic batches, so the report reads exactly what a run leaves on disk.
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.support on a plain run

from hpcbench.coordinator.ingest.aggregator import Aggregator  # noqa: E402
from hpcbench.coordinator.report import build_report  # noqa: E402
from hpcbench.coordinator.report.exports import export_requests  # noqa: E402
from hpcbench.coordinator.report.rundata import load_run  # noqa: E402
from hpcbench.coordinator.session.results import ResultsWriter  # noqa: E402
from hpcbench.coordinator.session.verdicts import decide  # noqa: E402
from hpcbench.proto.samples import ErrorClass  # noqa: E402
from tests.support.sample_batches import make_batch  # noqa: E402

TARGETS = {
    "report_cpu_s_per_100k_requests": ("<=", 5.0),
    "export_csv_requests_per_cpu_s": (">=", 100_000),
}
TRIALS, BATCHES, ROWS, TOKENS = 2, 100, 1_000, 16


def make_run(root: Path) -> Path:
    writer = ResultsWriter(root, "bench", "s1")
    aggregator = Aggregator(run_id="run-1")
    for trial in range(TRIALS):
        trial_id = f"concurrency-{4 ** trial}"
        sink = writer.open_trial(trial_id, {"trial": {"id": trial_id, "index": trial,
                                                      "params": {"concurrency": 4 ** trial}}})
        aggregator.open_trial(trial_id, {"ttft": 0.05}, sink)
        for seq in range(BATCHES):
            aggregator.ingest(make_batch(seq, ROWS, trial=trial_id, chunks=TOKENS,
                                         errors={7: ErrorClass.TIMEOUT}))
        summary = aggregator.close_trial(trial_id)
        sink.finish(summary, decide(summary.overall, error_threshold=0.01))
    return writer.session_dir


def run() -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = make_run(Path(scratch))
        requests = TRIALS * BATCHES * ROWS
        cpu = time.process_time()
        build_report(run_dir)
        report_cpu = time.process_time() - cpu
        cpu = time.process_time()
        export_requests(load_run(run_dir), "csv")
        export_cpu = time.process_time() - cpu
        return {"requests": requests,
                "report_cpu_s_per_100k_requests": round(report_cpu * 100_000 / requests, 2),
                "report_mb": round((run_dir / "report.html").stat().st_size / 1e6, 2),
                "export_csv_requests_per_cpu_s": round(requests / export_cpu)}


if __name__ == "__main__":
    print(run())
