"""`hpcbench report RUN_DIR`: build report.html, summary.json/summary.csv of a run, and on
request the per-request export (requests.csv / requests.jsonl). Details: docs/reports.md."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Build the HTML report of a finished run"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a run directory: results/<scenario>/<session>")
    parser.add_argument("--export", action="append", choices=("csv", "jsonl"), default=[],
                        help="also write every request to RUN_DIR/requests.csv or "
                             "requests.jsonl (repeatable)")


def run(args: argparse.Namespace) -> int:
    from hpcbench.coordinator.report import build_report
    from hpcbench.coordinator.report.exports import export_requests
    from hpcbench.coordinator.report.rundata import load_run

    report = build_report(args.run_dir)
    print(f"report: {report}")
    print(f"summary: {args.run_dir / 'summary.json'}, {args.run_dir / 'summary.csv'}")
    if args.export:
        run_data = load_run(args.run_dir)
        for fmt in dict.fromkeys(args.export):
            print(f"requests: {export_requests(run_data, fmt)}")
    return 0
