"""`hpcbench run`: Run a recipe on this machine with live progress and a final report.

The command is the coordinator: it serves the Control API (so `hpcbench status/stop/watch` and
other tools can follow the session), runs the session's lifecycle and starts the service,
monitors and executors as child processes. Exit status 0 only when the final attempt of every
trial passed (verdicts stored with the trials, earlier runs' included: a re-run of a session
measures failed and cut trials again and skips only passed ones); otherwise the error code of
what went wrong (E001..E008; E004 for a trial that broke the recipe's limits).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

HELP = "Run a recipe on this machine with live progress and a final report"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML file, e.g. recipes/examples/local-sim.yaml")
    parser.add_argument("--session", metavar="ID",
                        help="session id; the id of an earlier run resumes its sweep: "
                             "passed trials are skipped, failed or cut ones measured again")
    parser.add_argument("--results-dir", type=Path, metavar="DIR",
                        help="results root (default: the recipe's results_dir, 'results')")
    parser.add_argument("--executors", type=int, metavar="N",
                        help="executor processes (default: the recipe's executors_per_node)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address every component binds (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="control gRPC port (default: free)")
    parser.add_argument("--no-live", action="store_true",
                        help="plain progress lines instead of the live panel")
    parser.add_argument("--no-report", action="store_true",
                        help="skip report.html at the end (`hpcbench report DIR` makes it later)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hpcbench.common.errors import HpcbenchError, config_error
    from hpcbench.common.ids import check_id
    from hpcbench.common.limits import MAX_PER_NODE
    from hpcbench.coordinator.cli.progress import (
        final_line,
        follow,
        search_table,
        summary_table,
    )
    from hpcbench.coordinator.control.server import Coordinator
    from hpcbench.coordinator.launch.plan import local_notes
    from hpcbench.coordinator.report.capacity import answer
    from hpcbench.coordinator.session.lifecycle import new_session_id
    from hpcbench.proto import control_v1_pb2 as pb
    from hpcbench.recipes import load_recipe

    if args.executors is not None and not 1 <= args.executors <= MAX_PER_NODE:
        raise config_error(f"--executors {args.executors}: need 1 to {MAX_PER_NODE} executor "
                           "processes (they all run on this machine)")
    if args.session is not None:   # it names the run directory: checked before anything exists
        check_id(args.session, "--session id")
    recipe = load_recipe(args.recipe)            # bad recipes fail here, before anything starts
    if recipe.data["orchestration"]["mode"] == "slurm":
        raise config_error(f"{args.recipe}: orchestration.mode is 'slurm'; `hpcbench run` runs "
                           "on this machine only",
                           [f"fix: `hpcbench submit {args.recipe}` (or sbatch run.sbatch) on the "
                            "cluster, or set orchestration.mode: local to try it here"])
    session_id = args.session if args.session is not None else new_session_id()
    results_root = args.results_dir or Path(recipe.data["results_dir"])
    run_dir = results_root / recipe.scenario / session_id
    console = Console(width=None if sys.stdout.isatty() else 132)
    _refuse_if_running(run_dir, session_id)
    try:
        coordinator = Coordinator(run_dir, host=args.host, port=args.port,
                                  results_root=results_root,
                                  bind=recipe.data["security"]["bind_address"]).start()
    except OSError as error:
        raise config_error(f"cannot write the session directory {run_dir}: {error.strerror}",
                           ["fix: choose a writable --results-dir"]) from None
    try:
        session = coordinator.start_session(recipe_path=args.recipe, session_id=session_id,
                                            executors=args.executors,
                                            write_report=not args.no_report)
        console.print(f"session {session_id}: control {coordinator.address}, "
                      f"results {run_dir}", highlight=False)
        for note in local_notes(recipe.data):
            console.print(f"note: {note}", highlight=False)
        _stop_on_signals(session)
        follow(session, console, live=not args.no_live)
    finally:
        coordinator.stop()
    if session.all_results():
        console.print(summary_table(session))
    search = session.search.result() if session.search is not None else None
    if search is not None and search["probes"]:
        console.print(search_table(search))
    if search is not None:
        console.print(answer(search), highlight=False)
    console.print(final_line(session), highlight=False)
    if (run_dir / "report.html").exists():
        console.print(f"report: {run_dir / 'report.html'}", highlight=False)
    if session.state == pb.FAILED:
        print(session.error.render(), file=sys.stderr)
        return session.error.exit_status
    if session.state == pb.STOPPED:
        print(f"stopped: {session.stop_reason}", file=sys.stderr)
        return 130
    failed = session.trial_problems()
    if failed:
        error = HpcbenchError("E004", f"{len(failed)} trial(s) did not complete within the "
                              "recipe's limits", failed)
        print(error.render(), file=sys.stderr)
        return error.exit_status
    return 0


def _refuse_if_running(run_dir: Path, session_id: str) -> None:
    """Two coordinators must never write one session: refuse while another one serves it."""
    import json

    from hpcbench.common.errors import config_error
    from hpcbench.coordinator.control.client import ADDRESS_FILE

    try:
        pid = json.loads((run_dir / ADDRESS_FILE).read_text())["pid"]
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return  # no earlier coordinator, or it is gone: resuming is safe
    if pid != os.getpid():
        raise config_error(f"session {session_id!r} is being run by process {pid}",
                           [f"fix: `hpcbench stop --run-dir {run_dir}` first, or choose "
                            "another --session"])


def _stop_on_signals(session) -> None:
    """Ctrl-C / SIGTERM stop the session gracefully (the running trial drains, results stay);
    a second one exits at once (children still die with us)."""
    def handle(signum, frame):
        if session.stop_requested:
            os._exit(130)
        session.stop(f"{signal.Signals(signum).name} received")

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)
