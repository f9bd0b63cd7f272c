"""Reports of finished runs: report.html, run summaries, per-request exports, run comparison.

`build_report(run_dir)` is what `hpcbench report` and the end of `hpcbench run` call.
"""
from __future__ import annotations

from pathlib import Path

REPORT_FILE = "report.html"


def build_report(run_dir: Path) -> Path:
    """Write <run_dir>/report.html, summary.json and summary.csv; return the report's path.
    Raises HpcbenchError (E006) when run_dir is not a run directory with a finished trial."""
    from hpcbench.common.files import write_atomic
    from hpcbench.coordinator.report.environment import run_environment
    from hpcbench.coordinator.report.exports import write_run_summary
    from hpcbench.coordinator.report.html import render_report
    from hpcbench.coordinator.report.rundata import load_run

    run = load_run(Path(run_dir))
    write_run_summary(run)
    path = run.run_dir / REPORT_FILE
    write_atomic(path, render_report(run, run_environment(run.run_dir)))
    return path
