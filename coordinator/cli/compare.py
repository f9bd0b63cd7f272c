"""`hpcbench compare RUN_A RUN_B`: per sweep point and metric, B - A with a 95 % confidence
interval when both runs have repetitions; printed, and with --html also as a page."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Compare two runs metric by metric (with confidence intervals over repetitions)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="baseline run directory")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="run directory compared with A")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the comparison as a self-contained HTML page")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hpcbench.common.errors import config_error
    from hpcbench.common.files import write_atomic
    from hpcbench.coordinator.report.compare import compare_runs
    from hpcbench.coordinator.report.compare_page import comparison_html, terminal_table
    from hpcbench.coordinator.report.rundata import load_run

    if args.html and not args.html.parent.is_dir():
        raise config_error(f"--html {args.html}: directory {args.html.parent} does not exist",
                           ("create it first or give another path",))
    comparison = compare_runs(load_run(args.run_a), load_run(args.run_b))
    view = terminal_table(comparison)
    console = Console()
    # never shorten a name or a number to fit a narrow terminal: let long lines wrap instead
    natural = console.measure(view, options=console.options.update_width(1000)).maximum
    Console(width=max(console.width, natural)).print(view)
    if args.html:
        write_atomic(args.html, comparison_html(comparison))
        print(f"comparison: {args.html}")
    return 0
