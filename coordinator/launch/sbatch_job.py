"""The body of run.sbatch: one benchmark session inside one Slurm allocation.

`python -m hpcbench.coordinator.launch.sbatch_job recipe.yaml` (run by run.sbatch on the job's first
node) validates the recipe, checks the allocation and places roles, then runs the coordinator
here with a session (id = job id) whose launcher (`srun`, launch/srun.py) starts every
component as an `srun --overlap` step on its node: servers, a monitor per node, executor agents
on the client nodes. The session does the rest
(health, prepare, every trial of the sweep and its repetitions, results). On completion,
failure, `scancel` (SIGTERM) or the time limit (SIGUSR1 from `--signal=B:USR1@60`) every step is
stopped and `job.json` written before exiting with the session's code.

Results land in `<submit dir>/<results_dir>/<scenario>/<job id>/`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.files import check_private_dir, write_private
from hpcbench.common.logs import configure_logging
from hpcbench.coordinator.launch.slurm import (
    Allocation,
    place_on_allocation,
    slurm_client_binds,
)
from hpcbench.coordinator.launch.srun import (
    check_hpcbench_image,
    component_image,
    ensure_image,
    remove_containers,
)
from hpcbench.coordinator.report.capacity import answer
from hpcbench.coordinator.session.results import trial_attempts
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.servers.runtime import CONTAINER_RUNTIMES

log = logging.getLogger(__name__)

SESSION_STOP_S = 20.0  # a stopped session drains, tears its steps down and writes its record
IMAGES_CHECKED = "HPCBENCH_IMAGES_CHECKED"  # set in the coordinator's container


class JobSignal(Exception):
    """Slurm asked the job to end: SIGTERM (scancel) or SIGUSR1 (time limit near)."""

    def __init__(self, signum: int):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"received {name} ({'time limit' if signum == signal.SIGUSR1 else 'scancel'})")

    @property
    def state(self) -> str:
        return "time-limit" if self.signum == signal.SIGUSR1 else "cancelled"

    @property
    def exit_status(self) -> int:
        return 17 if self.signum == signal.SIGUSR1 else 128 + self.signum


def _raise_job_signal(signum, _frame) -> None:
    for handled in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(handled, signal.SIG_IGN)  # teardown must not be interrupted again
    raise JobSignal(signum)


class SlurmJob:
    """One session in one allocation; `run()` returns the exit status for run.sbatch."""

    def __init__(self, recipe_path: Path):
        self.recipe_path = recipe_path
        self.record: dict = {"state": "starting", "exit_code": None, "error": None,
                             "trials": []}
        self.run_dir: Path | None = None
        self.session = None

    def run(self) -> int:
        from hpcbench.coordinator.control.server import Coordinator
        from hpcbench.recipes.loader import load_recipe

        coordinator = containers = None
        try:
            recipe = load_recipe(self.recipe_path)
            allocation = Allocation.from_environment()   # checks the job id: the session id
            placement = place_on_allocation(recipe, allocation)
            self._open_run_dir(recipe, allocation, placement)
            if recipe.data["runtime"] in CONTAINER_RUNTIMES:
                containers = recipe.data["runtime"]
                if not os.environ.get(IMAGES_CHECKED):  # else checked before this container
                    ensure_images(recipe.data, placement)
            coordinator = Coordinator(self.run_dir, host=allocation.addresses[placement.coordinator],
                                      results_root=self.run_dir.parent.parent,
                                      bind=recipe.data["security"]["bind_address"]).start()
            self.record.update(state="running", control=coordinator.address)
            self._save()
            self.session = coordinator.start_session(
                recipe_path=str(self.recipe_path), session_id=allocation.job_id,
                launcher="srun", launcher_options={"placement": placement,
                                                   "allocation": allocation})
            while not self.session.wait(0.5):
                pass
            return self._finish_session()
        except JobSignal as stop:
            log.warning("%s; stopping the session and every step", stop)
            self._finish(stop.state, stop.exit_status, str(stop))
            self._save()  # recorded first: Slurm kills the job KillWait seconds after TERM
            if self.session is not None:
                self.session.stop(str(stop))
                self.session.wait(SESSION_STOP_S)
            return self._finish(stop.state, stop.exit_status, str(stop))
        except HpcbenchError as error:
            log.error(error.render())
            return self._finish("failed", error.exit_status, error.render())
        finally:
            if coordinator is not None:
                coordinator.stop()
            if containers == "podman":
                remove_containers(allocation)
            self._save()

    def _finish_session(self) -> int:
        """The session's own outcome: its error, or E004 when the final attempt of a trial (a
        re-run of the job keeps the earlier ones' verdicts) broke its limits."""
        session = self.session
        if session.state == pb.STOPPED:  # `hpcbench stop` through the Control API
            return self._finish("stopped", 130, session.stop_reason)
        if session.error is not None:
            log.error(session.error.render())
            return self._finish("failed", session.error.exit_status, session.error.render())
        if session.search is not None:
            self.record["search"] = session.search.result()
            log.info(answer(self.record["search"]))
        failed = session.trial_problems()
        if failed:
            error = HpcbenchError("E004", f"{len(failed)} trial(s) did not complete within the "
                                          "recipe's limits", failed)
            log.error(error.render())
            return self._finish("failed", error.exit_status, error.render())
        return self._finish("completed", 0)

    def _finish(self, state: str, code: int, error: str | None = None) -> int:
        self.record.update(state=state, exit_code=code, error=error, finished_at=time.time(),
                           trials=self._trial_states())
        return code

    def _trial_states(self) -> list[dict]:
        """Each trial `finished` (trial.done), `partial` (started, cut short) or `not-run`, by
        its newest attempt, with that attempt's `verdict` and how many `attempts` it has."""
        if self.session is None or self.run_dir is None:
            return []
        states = []
        for trial in self.session.trials:
            attempts = trial_attempts(self.run_dir / trial.id)
            final = attempts[-1] if attempts else {}
            verdict = final.get("verdict", "not-run")
            state = ("not-run" if not attempts else
                     "partial" if verdict == "cut" else "finished")
            states.append({"id": trial.id, "params": trial.params, "state": state,
                           "verdict": verdict, "attempts": len(attempts)})
        return states

    def _save(self) -> None:
        if self.run_dir is not None:
            # names the control address, like coordinator.json: private
            write_private(self.run_dir / "job.json", json.dumps(self.record, indent=2,
                                                                default=str))

    def _open_run_dir(self, recipe, allocation: Allocation, placement) -> None:
        submit_dir = Path(os.environ.get("SLURM_SUBMIT_DIR", "."))
        root = Path(recipe.data["results_dir"])
        run_dir = (root if root.is_absolute() else submit_dir / root) / \
            recipe.scenario / allocation.job_id
        check_private_dir(run_dir)   # it will hold the token: only we may write there
        self.run_dir = run_dir       # job.json is written from now on
        self.record.update(job_id=allocation.job_id, scenario=recipe.scenario,
                           nodes=list(allocation.nodes), addresses=dict(allocation.addresses),
                           placement=placement.to_dict(), started_at=time.time())

def ensure_images(data: dict, placement) -> None:
    """Every image the job runs exists (pulled when allowed); those that run hpcbench's
    own programs have hpcbench in them (E003 before any step starts, not a step that
    cannot find `hpcbench-executor`)."""
    images = job_images(data, placement)
    runtime = data["runtime"]
    for image in images:
        ensure_image(image["image"], image["remote"], pull_allowed=image["pull"],
                     runtime=runtime)
    for path in sorted({image["image"] for image in images if image["role"] != "service"}):
        check_hpcbench_image(path, runtime)


def job_images(data: dict, placement) -> list[dict]:
    """The images a containerised job runs, per role (`executor`, `monitor` when monitoring is
    on, `service` when servers are deployed from `artifacts.service`; a service without one
    is the simulator, which runs in the executor's image): path, remote to pull from, and
    whether a missing one may be pulled (artifacts.pull)."""
    roles = ["executor"] + (["monitor"] if data["monitoring"]["enabled"] else [])
    if placement.servers and (data["artifacts"].get("service") or {}).get("path"):
        roles.append("service")
    return [{"role": role, "image": image, "remote": remote, "pull": data["artifacts"]["pull"]}
            for role in roles for image, remote in [component_image(role, data)]]


def print_modules(recipe_path: Path) -> int:
    """Print the recipe's `modules` shell-quoted for `module load` in run.sbatch (validating
    the recipe first, so a bad one fails before anything is loaded)."""
    from hpcbench.recipes.loader import load_recipe

    try:
        modules = load_recipe(recipe_path).data["modules"]
    except HpcbenchError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_status
    print(shlex.join(str(module) for module in modules))
    return 0


def session_argv(recipe_path: Path) -> list[str]:
    """How run.sbatch starts the session: this Python, or under `runtime: podman` the
    coordinator image's, with the host's Slurm client bound in (slurm.slurm_client_binds) and
    the images checked here first (podman does not run inside the container). Where the recipe
    or the images are wrong, this Python: the session then records the error in job.json."""
    from hpcbench.recipes.loader import load_recipe
    from hpcbench.servers.runtime import ContainerRun, hpcbench_image, podman_argv

    here = [sys.executable, "-m", "hpcbench.coordinator.launch.sbatch_job", str(recipe_path)]
    try:
        data = load_recipe(recipe_path).data
        if data["runtime"] != "podman":
            return here
        placement = place_on_allocation(load_recipe(recipe_path), Allocation.from_environment())
        ensure_images(data, placement)
        image = hpcbench_image("coordinator", data["artifacts"], "podman")[0]
        ensure_image(image, None, runtime="podman")
    except HpcbenchError:
        return here
    submit_dir = Path(os.environ.get("SLURM_SUBMIT_DIR", ".")).resolve()
    results = submit_dir / data["results_dir"]
    results.mkdir(parents=True, exist_ok=True)  # bound into the container, so made here
    folders = {Path.cwd(), submit_dir, recipe_path.resolve().parent, results}
    run = ContainerRun(
        image=image, argv=("/opt/hpcbench/venv/bin/python", *here[1:]),
        binds=(*slurm_client_binds(), *(str(folder) for folder in sorted(folders))),
        env=(f"{IMAGES_CHECKED}=1",), workdir=str(Path.cwd()),
        stop_grace_s=int(SESSION_STOP_S) + 20)
    return podman_argv(run)


def main(argv: list[str] | None = None) -> int:
    configure_logging("run.sbatch")
    parser = argparse.ArgumentParser(prog="run.sbatch",
                                     description="Run one hpcbench session in this Slurm job.")
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--print-modules", action="store_true",
                        help="only print the recipe's modules for `module load`")
    parser.add_argument("--print-session", action="store_true",
                        help="only print (shell-quoted) the command that runs the session")
    args = parser.parse_args(argv)
    if args.print_modules:
        return print_modules(args.recipe)
    if args.print_session:
        print(shlex.join(session_argv(args.recipe)))
        return 0
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(signum, _raise_job_signal)
    return SlurmJob(args.recipe).run()


if __name__ == "__main__":
    sys.exit(main())
