"""`hpcbench stop`: Stop a running session gracefully, keeping everything measured.

Control.Stop: the running trial is stopped and drained, finished trials stay finished, and a
later `hpcbench run --session ID` resumes the sweep. With `--remote HOST` the call goes through an
SSH tunnel to the coordinator on the cluster (docs/remote.md); the batch job then ends by itself
once the session has stopped.
"""
from __future__ import annotations

import argparse

HELP = "Stop a running session gracefully, keeping everything measured"


def configure(parser: argparse.ArgumentParser) -> None:
    from hpcbench.coordinator.cli.remote_options import add_remote_arguments
    from hpcbench.coordinator.control.client import add_target_arguments

    add_target_arguments(parser)
    add_remote_arguments(parser)
    parser.add_argument("--reason", default="stopped with `hpcbench stop`",
                        help="recorded in the session's status")


def run(args: argparse.Namespace) -> int:
    from hpcbench.coordinator.cli.remote_options import job_as_session
    from hpcbench.coordinator.control.client import ControlClient, target_from_args

    job_as_session(args)
    if args.remote:
        return _run_remote(args)
    with ControlClient(target_from_args(args)) as client:
        status = client.stop(reason=args.reason)
    print(f"session {status.session_id}: stop requested ({status.state_name.lower()}); "
          f"results in {status.run_dir}")
    return 0


def _run_remote(args: argparse.Namespace) -> int:
    from hpcbench.coordinator.cli.remote_options import connection, find, refuse_local_flags
    from hpcbench.coordinator.control.client import ControlClient

    refuse_local_flags(args, "run_dir", "address", "token_file", "tls_cert")
    with connection(args) as ssh:
        session = find(args, ssh)
        if session.ended():
            print(f"session {session.session_id} has already ended; its final state:")
            print(session.final_state(args.remote_hpcbench))
            return 0
        with ControlClient(session.target()) as client:
            status = client.stop(reason=args.reason)
    print(f"session {status.session_id}: stop requested ({status.state_name.lower()}); "
          f"results in {args.remote}:{status.run_dir}")
    return 0
