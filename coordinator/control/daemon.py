"""`hpcbench-coordinator`: the coordinator as a long-running daemon serving the Control API.

External tools start sessions with Control.StartSession; `run.sbatch` starts this on the
allocation's first node. It writes `coordinator.json` and `control.token` (0600) to --run-dir,
serves until SIGTERM/SIGINT, then stops running sessions (they keep what they measured).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.logs import configure_logging

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcbench-coordinator", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, type=Path,
                        help="where coordinator.json and control.token are written")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (the node's cluster interface on clusters; "
                             "default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (0: pick a free one)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="results root for sessions (default: each recipe's results_dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging("hpcbench-coordinator")
    args = build_parser().parse_args(argv)
    from hpcbench.coordinator.control.server import Coordinator

    try:
        coordinator = Coordinator(args.run_dir, host=args.host, port=args.port,
                                  results_root=args.results_dir).start()
    except HpcbenchError as error:
        log.error(error.render())
        return error.exit_status
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("serving Control on %s (token in %s)", coordinator.address, coordinator.token_file)
    while not stop.wait(1.0):  # a timed wait lets the signal handlers run promptly
        pass
    coordinator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
