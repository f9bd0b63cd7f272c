"""`hpcbench stop`: Stop a running session gracefully, keeping everything measured.

Control.Stop: the running trial is stopped and drained, finished trials stay finished, and a
later `hpcbench run --session ID` resumes the sweep.
"""
from __future__ import annotations

import argparse

HELP = "Stop a running session gracefully, keeping everything measured"


def configure(parser: argparse.ArgumentParser) -> None:
    from hpcbench.coordinator.control.client import add_target_arguments

    add_target_arguments(parser)
    parser.add_argument("--reason", default="stopped with `hpcbench stop`",
                        help="recorded in the session's status")


def run(args: argparse.Namespace) -> int:
    from hpcbench.coordinator.control.client import ControlClient, target_from_args

    with ControlClient(target_from_args(args)) as client:
        status = client.stop(reason=args.reason)
    print(f"session {status.session_id}: stop requested ({status.state_name.lower()}); "
          f"results in {status.run_dir}")
    return 0
