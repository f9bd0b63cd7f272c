"""`hpcbench status`: Show the state of running sessions (and their Slurm jobs).

Asks the session's coordinator over gRPC (Control.Status); a session whose coordinator has
ended is shown from its session.json instead. With `--remote HOST` the call goes through an SSH
tunnel to the coordinator on the cluster, and an ended session is shown by the login node's
`hpcbench status` (docs/remote.md).
"""
from __future__ import annotations

import argparse
import json

HELP = "Show the state of running sessions (and their Slurm jobs)"


def configure(parser: argparse.ArgumentParser) -> None:
    from hpcbench.coordinator.cli.remote_options import add_remote_arguments
    from hpcbench.coordinator.control.client import add_target_arguments

    add_target_arguments(parser)
    add_remote_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--all", action="store_true",
                        help="one line per session the coordinator knows (Control.List)")


def run(args: argparse.Namespace) -> int:
    from hpcbench.common.errors import HpcbenchError
    from hpcbench.coordinator.cli.remote_options import job_as_session
    from hpcbench.coordinator.control.client import ControlClient, target_from_args

    job_as_session(args)
    if args.remote:
        return _run_remote(args)
    target = target_from_args(args)
    try:
        with ControlClient(target, timeout_s=5.0) as client:
            if args.all:
                return _show_all(client.list(), args.json)
            status = client.status()
    except HpcbenchError as error:
        if error.code != "E008" or target.run_dir is None:
            raise
        return _show_ended(target.run_dir, args.json, error)
    show(status, args.json)
    if not args.json:
        _show_slurm_job(target.run_dir)
    return 0


def _run_remote(args: argparse.Namespace) -> int:
    """The same, through the SSH tunnel; an ended (or not yet started) session is shown by the
    login node's own `hpcbench status`."""
    from hpcbench.common.errors import HpcbenchError
    from hpcbench.coordinator.cli.remote_options import connection, find, refuse_local_flags
    from hpcbench.coordinator.control.client import ControlClient
    from hpcbench.coordinator.remote.sessions import JobNotStarted

    refuse_local_flags(args, "run_dir", "address", "token_file", "tls_cert")
    with connection(args) as ssh:
        try:
            session = find(args, ssh)
        except JobNotStarted as pending:
            print(pending.message)
            return 0
        if not session.ended() and session.coordinator():
            try:
                with ControlClient(session.target(), timeout_s=10.0) as client:
                    if args.all:
                        return _show_all(client.list(), args.json)
                    show(client.status(), args.json)
                    return 0
            except HpcbenchError as error:
                if error.code != "E008":
                    raise
        print(session.final_state(args.remote_hpcbench, args.json))
    return 0


def show(status, as_json: bool) -> None:
    """Print a Control.Status reply (also for `--remote`, through the tunnel)."""
    from google.protobuf.json_format import MessageToDict

    if as_json:
        print(json.dumps(MessageToDict(status, preserving_proto_field_name=True), indent=2))
        return
    print(f"session   {status.session_id} ({status.scenario})")
    print(f"state     {status.state_name.lower()}")
    if status.trial.trial_id:
        trial = status.trial
        print(f"trial     {trial.index + 1}/{trial.total} {trial.trial_id} {trial.phase} "
              f"{trial.elapsed_s:.0f}/{trial.duration_s:.0f}s")
    print(f"trials    {status.trials_done} done, {status.trials_skipped} skipped, "
          f"{status.trials_total} in the sweep")
    print(f"elapsed   {status.elapsed_s:.1f}s")
    print(f"results   {status.run_dir}")
    print(f"bus       {status.bus_endpoint}")
    for agent in status.agents:
        print(f"agent     {agent.agent_id} on {agent.node} ({_agent_role(agent.role)}): "
              f"{agent.state and _agent_state(agent.state)}, "
              f"heartbeat {agent.last_heartbeat_age_s:.1f}s ago")
    if status.error_message:
        print(status.error_message)


def _show_slurm_job(run_dir) -> None:
    """The Slurm job around the session, when run.sbatch ran it."""
    from hpcbench.coordinator.launch.slurm import job_summary

    line = job_summary(run_dir) if run_dir is not None else None
    if line:
        print(f"slurm     {line}")


def _show_all(reply, as_json: bool) -> int:
    from google.protobuf.json_format import MessageToDict

    if as_json:
        print(json.dumps(MessageToDict(reply, preserving_proto_field_name=True), indent=2))
        return 0
    for status in reply.sessions:
        print(f"{status.session_id}  {status.scenario}  {status.state_name.lower()}  "
              f"{status.trials_done}/{status.trials_total} trials  {status.run_dir}")
    return 0


def _agent_state(state: int) -> str:
    from hpcbench.proto import control_v1_pb2 as pb

    return pb.AgentState.Name(state).lower()


def _agent_role(role: int) -> str:
    from hpcbench.proto import control_v1_pb2 as pb

    return pb.AgentRole.Name(role).lower()


def _show_ended(run_dir, as_json: bool, error) -> int:
    """The coordinator is gone: show what the session recorded when it ended."""
    from hpcbench.coordinator.session.session_file import read_record

    record = read_record(run_dir)
    if not record or not isinstance(record.get("state"), str):
        raise error
    if as_json:
        print(json.dumps(record, indent=2))
        return 0
    from hpcbench.coordinator.session.session_file import ENDED

    trials = record.get("trials") or []
    passed = sum(1 for trial in trials if trial.get("passed"))
    state = record["state"].lower() if record["state"] in ENDED else \
        "interrupted (its coordinator is gone)"
    print(f"session   {record['session']} ({record['scenario']}): ended, {state}")
    if "runs" in record:      # session.json of every run, with final attempts' verdicts
        print(f"trials    {len(trials)} in the sweep, {passed} passed (final attempts), "
              f"{record['skipped']} skipped by the last of {len(record['runs'])} run(s)")
    else:
        print(f"trials    {len(trials)} run ({passed} passed), {record['skipped']} skipped")
    print(f"results   {run_dir}")
    if record.get("error"):
        print(record["error"])
    _show_slurm_job(run_dir)
    return 0
