"""The body of run.sbatch: one benchmark session inside one Slurm allocation.

`python -m hpcbench.coordinator.slurm_job recipe.yaml` (run by run.sbatch on the job's first
node) validates the recipe, checks the allocation, places roles, starts every component as an
`srun --overlap` step on its node (servers, a monitor per node, executors per trial), waits for
health, runs every trial of the sweep and its repetitions, and always stops every step and
writes `job.json` before exiting with the session's code, also on `scancel` (SIGTERM) and at
the time limit (SIGUSR1 from `--signal=B:USR1@60`).

Results land in `<submit dir>/<results_dir>/<scenario>/<job id>/`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hpcbench.coordinator.errors import HpcbenchError
from hpcbench.coordinator.local_runtime import LocalRuntime
from hpcbench.coordinator.slurm import Allocation, place_on_allocation

HEALTH_ROUND_S = 2.0   # how often a server step's liveness is checked while waiting for health
STEP_STOP_S = 10.0     # SIGTERM -> SIGKILL grace for each step on teardown


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


def srun_step(node: str, name: str, argv: list[str]) -> list[str]:
    """argv running `argv` as one task on `node`, sharing the job's CPUs with other steps."""
    return ["srun", "--overlap", "--nodes=1", "--ntasks=1", f"--nodelist={node}",
            f"--job-name={name}", "--kill-on-bad-exit=1", "--export=ALL", *argv]


def component_image(role: str, data: dict) -> tuple[str, str | None]:
    """(image path, remote to pull from) for `role` ("service", "monitor", "executor", ...):
    `artifacts.<role>` (path under `containers_dir`), else for hpcbench's own components the
    image `make images` builds: containers/hpcbench-<role>.sif in the submit directory."""
    from hpcbench.servers.runtime import service_image

    artifacts = data.get("artifacts") or {}
    entry = artifacts.get(role) or {}
    if role != "service" and not entry.get("path"):
        submit_dir = Path(os.environ.get("SLURM_SUBMIT_DIR", "."))
        return str(submit_dir / "containers" / f"hpcbench-{role}.sif"), None
    image = service_image({"containers_dir": artifacts.get("containers_dir"), "service": entry})
    return image, entry.get("remote")


def ensure_image(image: str, remote: str | None) -> None:
    """Pull a missing image from its `remote` (E003 when it is missing and cannot be pulled)."""
    if Path(image).exists():
        return
    if not remote:
        raise HpcbenchError("E003", f"container image {image} does not exist",
                            ("fix: run `make images` for hpcbench's images, or set the "
                             "artifact's `remote` (e.g. docker://ollama/ollama:latest) so it "
                             "is pulled",))
    pulled = subprocess.run(["apptainer", "pull", image, remote], capture_output=True,
                            text=True)
    if pulled.returncode != 0:
        raise HpcbenchError("E003", f"`apptainer pull {image} {remote}` failed",
                            tuple(pulled.stderr.strip().splitlines()[-3:]))


def component_argv(component: str, args: list[str], data: dict, run_dir: Path,
                   gpus: bool = False) -> list[str]:
    """argv of an hpcbench component (`monitor`, `executor`) in the recipe's runtime: the
    venv's console script for `process`, `apptainer exec` of its image (the recipe's binds
    plus the run directory) for `apptainer`."""
    from hpcbench.servers.runtime import wrap

    command = f"hpcbench-{component}"
    if data["runtime"] == "process":
        return [str(Path(sys.executable).with_name(command)), *args]
    image, _ = component_image(component, data)
    return wrap([command, *args], "apptainer", {"service": {"path": image}},
                [*data["binds"], str(run_dir)], gpus=gpus)


def executor_args(workload: dict, slot, concurrency: int, rate: float | None, run_id: str,
                  out: Path) -> list[str]:
    """`hpcbench-executor` standalone flags for one executor's share of a trial's workload.

    Token lengths go as their means: the standalone CLI knows fixed lengths only."""
    load, dataset = workload["load"], workload["dataset"]
    args = ["--target", slot.targets[0], "--api", workload["api"],
            "--model", str(workload.get("model") or ""), "--pattern", load["pattern"],
            "--concurrency", str(concurrency), "--duration", f"{workload['duration']}s",
            "--warmup", f"{workload['warmup']}s", "--timeout", f"{workload['request_timeout']}s",
            "--ramp-up", f"{load['ramp_up']}s", "--burstiness", str(load["burstiness"]),
            "--dataset", dataset["kind"], "--seed", str(dataset["seed"]),
            "--input-tokens", str(int(dataset["input_tokens"]["mean"])),
            "--run-id", run_id, "--executor-id", slot.id, "--node", slot.node, "--out", str(out)]
    optional = {"--rate": rate, "--burst-size": load["burst_size"], "--trace": load["trace"],
                "--burst-pause": None if load["burst_pause"] is None else f"{load['burst_pause']}s",
                "--max-requests": workload["max_requests"], "--dataset-path": dataset["path"],
                "--output-tokens": (dataset.get("output_tokens") or {}).get("mean")}
    for flag, value in optional.items():
        if value is not None:
            args += [flag, str(int(value) if flag == "--output-tokens" else value)]
    if dataset["ignore_eos"]:
        args.append("--ignore-eos")
    if not workload["stream"]:
        args.append("--no-stream")
    return args


def write_json_atomic(path: Path, value: dict) -> None:
    """Write JSON via a temp file + rename, so readers never see half a file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        json.dump(value, out, indent=2, default=str)
    os.replace(out.name, path)


class SlurmJob:
    """One session in one allocation; `run()` returns the exit status for run.sbatch."""

    def __init__(self, recipe_path: Path):
        self.recipe_path = recipe_path
        self.record: dict = {"state": "starting", "exit_code": None, "error": None,
                             "trials": []}
        self.run_dir: Path | None = None
        self.runtime: LocalRuntime | None = None

    # ---- the lifecycle -------------------------------------------------------------------
    def run(self) -> int:
        from hpcbench.recipes.loader import load_recipe

        try:
            recipe = load_recipe(self.recipe_path)
            allocation = Allocation.from_environment()
            placement = place_on_allocation(recipe, allocation)
            self._open_run_dir(recipe, allocation, placement)
            self.record["state"] = "running"
            self._save()
            if recipe.data["runtime"] == "apptainer":
                self._ensure_images(recipe, placement)
            urls = self._start_servers(recipe, allocation, placement)
            self._start_monitors(recipe, allocation, placement, urls)
            self._run_trials(recipe, allocation, placement)
            return self._finish("completed", 0)
        except JobSignal as stop:
            print(f"run.sbatch: {stop}; stopping every step", file=sys.stderr)
            return self._finish(stop.state, stop.exit_status, str(stop))
        except HpcbenchError as error:
            print(error.render(), file=sys.stderr)
            return self._finish("failed", error.exit_status, error.render())
        finally:
            if self.runtime is not None:
                self.runtime.stop_all(timeout_s=STEP_STOP_S)
            self._save()

    def _finish(self, state: str, code: int, error: str | None = None) -> int:
        self.record.update(state=state, exit_code=code, error=error,
                           finished_at=time.time())
        for trial in self.record["trials"]:
            if trial["state"] == "running":
                trial["state"] = "partial"  # stopped mid-trial: its samples are incomplete
        return code

    def _save(self) -> None:
        if self.run_dir is not None:
            write_json_atomic(self.run_dir / "job.json", self.record)

    def _open_run_dir(self, recipe, allocation: Allocation, placement) -> None:
        submit_dir = Path(os.environ.get("SLURM_SUBMIT_DIR", "."))
        root = Path(recipe.data["results_dir"])
        self.run_dir = (root if root.is_absolute() else submit_dir / root) / \
            recipe.scenario / allocation.job_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.runtime = LocalRuntime(self.run_dir)
        self.record.update(job_id=allocation.job_id, scenario=recipe.scenario,
                           nodes=list(allocation.nodes), addresses=dict(allocation.addresses),
                           placement=placement.to_dict(), started_at=time.time())
        write_json_atomic(self.run_dir / "recipe.json", recipe.data)

    def _ensure_images(self, recipe, placement) -> None:
        roles = ["executor"] + (["service"] if placement.servers else [])
        roles += ["monitor"] if recipe.data["monitoring"]["enabled"] else []
        for role in roles:
            ensure_image(*component_image(role, recipe.data))

    # ---- servers ---------------------------------------------------------------------------
    def _start_servers(self, recipe, allocation: Allocation, placement) -> list[str]:
        """Start a server step per server node, wait for health and prepare; the head URLs."""
        from hpcbench.servers.registry import get_service, launch_contexts

        if not placement.servers:
            return list(placement.endpoints)  # the recipe's external endpoints
        plugin = get_service(recipe.workload["service"])
        nodes = [server.node for server in placement.servers]
        contexts = launch_contexts(recipe, {"server_nodes": nodes,
                                            "addresses": dict(allocation.addresses)},
                                   self.run_dir, allocation.job_id)
        urls = []
        for ctx in contexts:
            spec = plugin.launch(ctx)
            self.runtime.start(f"service-{ctx.node}",
                               srun_step(ctx.node, f"service-{ctx.node}", spec.argv), spec.env)
            if spec.base_url:
                urls.append(spec.base_url)
        health = recipe.data["servers"]["health_check"]
        for url in urls:
            if health["enabled"]:
                self._wait_healthy(plugin, url, health["timeout"], health["interval"])
            plugin.prepare(url, recipe.workload.get("model"), health["timeout"])
        self.record["servers"] = urls
        self._save()
        return urls

    def _wait_healthy(self, plugin, url: str, timeout_s: float, interval_s: float) -> None:
        """The plugin's health check in short rounds, failing at once if a server step died."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_steps()
            remaining = deadline - time.monotonic()
            try:
                plugin.wait_healthy(url, max(0.1, min(HEALTH_ROUND_S, remaining)),
                                    min(interval_s, 0.5))
                return
            except HpcbenchError:
                if remaining <= HEALTH_ROUND_S:
                    raise

    def _check_steps(self) -> None:
        """E001/E004/E005 naming the step and its log when a step ended by itself."""
        for child in self.runtime.failed_children():
            code = {"service": "E001", "monitor": "E005"}.get(child.name.split("-")[0], "E004")
            raise HpcbenchError(code, f"step {child.name} exited with status "
                                      f"{child.process.returncode}",
                                (f"log: {child.log_path}", *child.log_tail(8)))

    # ---- monitors --------------------------------------------------------------------------
    def _start_monitors(self, recipe, allocation: Allocation, placement, urls: list[str]) -> None:
        """A monitor step on every node, scraping the server on server nodes."""
        from hpcbench.servers.registry import get_service

        monitoring = recipe.data["monitoring"]
        if not monitoring["enabled"]:
            return
        metrics_path = get_service(recipe.workload["service"]).metrics_path
        server_url = dict(zip((s.node for s in placement.servers), urls))
        telemetry = self.run_dir / "telemetry"
        telemetry.mkdir(exist_ok=True)
        for node in placement.monitors:
            args = ["--node", node, "--run-id", allocation.job_id,
                    "--interval", f"{monitoring['interval']}s",
                    "--csv", str(telemetry / f"{node}.csv")]
            if node in server_url and metrics_path:
                args += ["--server-metrics", server_url[node] + metrics_path]
            argv = component_argv("monitor", args, recipe.data, self.run_dir, gpus=True)
            self.runtime.start(f"monitor-{node}", srun_step(node, f"monitor-{node}", argv))

    # ---- trials ----------------------------------------------------------------------------
    def _run_trials(self, recipe, allocation: Allocation, placement) -> None:
        """Every trial (sweep x repetitions) in this allocation; finished ones are skipped."""
        from hpcbench.recipes import expand_trials

        for trial in expand_trials(recipe):
            trial_dir = self.run_dir / "trials" / trial.id
            entry = {"id": trial.id, "params": trial.params, "state": "running"}
            self.record["trials"].append(entry)
            if (trial_dir / "done.json").exists():
                entry["state"] = "finished"
                continue
            trial_dir.mkdir(parents=True, exist_ok=True)
            self._save()
            self._run_trial(recipe, placement, trial, trial_dir)
            write_json_atomic(trial_dir / "done.json", {"id": trial.id, "params": trial.params})
            entry["state"] = "finished"
            self._save()

    def _run_trial(self, recipe, placement, trial, trial_dir: Path) -> None:
        """Run the trial's executors (one srun step each, on its client node) to the end."""
        from hpcbench.coordinator.plan import executor_concurrency, executor_shares

        workload = trial.workload
        count = len(placement.executors)
        streams = executor_concurrency(workload, placement)
        rates = executor_shares(workload["load"]["rate"], count) if workload["load"]["rate"] \
            else [None] * count
        steps = []
        for slot, concurrency, rate in zip(placement.executors, streams, rates):
            args = executor_args(workload, slot, concurrency, rate, self.record["job_id"],
                                 trial_dir / f"{slot.id}.samples")
            name = f"executor-{slot.id}-{trial.index}"
            argv = component_argv("executor", args, recipe.data, self.run_dir)
            step = self.runtime.start(name, srun_step(slot.node, name, argv))
            step.expected_exit = True  # executors end by themselves; their status is read below
            steps.append(step)
        budget = workload["warmup"] + workload["duration"] + workload["request_timeout"] + 30
        deadline, pause = time.monotonic() + budget, threading.Event()
        while any(step.process.poll() is None for step in steps):
            self._check_steps()
            if time.monotonic() > deadline:
                raise HpcbenchError("E007", f"trial {trial.id}: executors still running after "
                                            f"{budget:g}s", (f"logs: {self.runtime.log_dir}",))
            pause.wait(0.2)
        failed = [f"{s.name}: exit {s.process.returncode}; log {s.log_path}" for s in steps
                  if s.process.returncode != 0]
        if failed:
            raise HpcbenchError("E004", f"trial {trial.id}: executors failed", failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.sbatch",
                                     description="Run one hpcbench session in this Slurm job.")
    parser.add_argument("recipe", type=Path)
    args = parser.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(signum, _raise_job_signal)
    return SlurmJob(args.recipe).run()


if __name__ == "__main__":
    sys.exit(main())
