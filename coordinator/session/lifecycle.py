"""One benchmark session: the lifecycle of DESIGN section 3, phase by phase.

validate -> expand trials -> deploy service -> health/prepare -> monitors -> executors ->
per trial (warmup, measured, drain) -> teardown -> results/report.

Each phase is a `SessionState` in `status()` and a lifecycle event on the metrics bus. A failure
in any phase stops the session with its error code (E001..E008) while everything measured so far
stays in the results; teardown always runs. A re-run of the same session id skips the trials
whose newest attempt passed and measures the others again (failed or cut ones: results.py keeps
their earlier attempts); session.json records every run (session_file.py). The session runs in
its own thread, started by `Coordinator.start_session`; a `Launcher`
(coordinator/launch/base.py) starts its processes on this machine or, under Slurm, as srun
steps: the session never knows which.

A recipe with a `search` block has no trial list up front: each next trial is the probe its
capacity search picks from the verdicts so far (capacity.py), and a re-run replays the
recorded verdicts before measuring on.

Each executor sends its requests to the server endpoints the recipe's
`distribution_strategy` maps it to (`plan.assign_targets`; under all-to-all every endpoint, its
requests taking them in turn), so every server gets load.
"""
from __future__ import annotations

import functools
import json
import logging
import secrets
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from hpcbench.common import tls
from hpcbench.common.errors import HpcbenchError
from hpcbench.common.files import check_private_dir
from hpcbench.common.ids import check_id
from hpcbench.coordinator.control.agents import AgentRegistry
from hpcbench.coordinator.control.feed import SessionFeed
from hpcbench.coordinator.launch.base import Launcher, make_launcher
from hpcbench.coordinator.session.disk_space import check_free_space
from hpcbench.executor.config import LoadConfig, with_executor_share
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto.bus import Event
from hpcbench.proto.trial import TrialConfig

log = logging.getLogger(__name__)

REGISTRATION_TIMEOUT_S = 60.0
HEALTH_ROUND_S = 1.0          # between health checks, a crash or stop is noticed this fast
SERVER_VERSION_TIMEOUT_S = 5.0  # asking the server its version; no answer is "unknown"
MONITOR_FIRST_REPORT_S = 30.0  # monitors get this long to send their first telemetry
TRIAL_GRACE_S = 30.0          # beyond warmup + duration + request timeout before E007


def load_recipe_source(recipe_text: str | None, recipe_path: str | None):
    """The validated Recipe from its text or its path (HpcbenchError E006 on any problem; the
    text gets the limits of a file: size, aliases, depth)."""
    from hpcbench.recipes import load_recipe, load_recipe_text

    if recipe_path is not None:
        return load_recipe(recipe_path)
    return load_recipe_text(recipe_text, "StartSession recipe_yaml")


def new_session_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def wait_for_health(service, url: str, health: dict, *, check=lambda: None,
                    pause=None) -> None:
    """The recipe's health check (`servers.health_check`, resolved) of one endpoint: one check
    every `interval` until the server answers, `timeout` has passed or `retries` checks have
    failed (E001 with the last answer). `check()` is called between checks and raises to end
    the wait (the session's: a crashed server, a stop request, scancel, the time limit), and
    `pause(seconds)` waits (the session's stop event), in slices of at most HEALTH_ROUND_S,
    so that ending the wait never takes the whole timeout (a model may load for minutes)."""
    timeout_s, interval_s, retries = health["timeout"], health["interval"], health["retries"]
    pause = pause or threading.Event().wait
    deadline = time.monotonic() + timeout_s
    failed = 0
    while True:
        check()
        try:
            service.wait_healthy(url, 0.0, interval_s)   # one check
            return
        except HpcbenchError as error:
            failed += 1
            last = error
        now = time.monotonic()
        if retries is not None and failed >= retries:
            raise HpcbenchError(last.code, f"{service.name} at {url} not healthy after "
                                f"{failed} check(s) {interval_s:g}s apart "
                                f"(servers.health_check.retries: {retries})",
                                (*last.details[:1], "fix: look at the server log in the run "
                                 "directory; raise servers.health_check.retries or interval "
                                 "if the model loads slowly"))
        if now >= deadline:
            raise HpcbenchError(last.code, f"{service.name} at {url} not healthy after "
                                f"{timeout_s:g}s", last.details)
        next_check = min(now + interval_s, deadline)
        while (remaining := next_check - time.monotonic()) > 0:
            pause(min(remaining, HEALTH_ROUND_S))
            check()


def monitor_prometheus_port(monitoring: dict) -> int:
    """The port every monitor serves /metrics on (monitoring.prometheus.monitor_port when
    monitoring.prometheus is enabled); 0 for none."""
    prometheus = monitoring["prometheus"]
    return prometheus["monitor_port"] if prometheus["enabled"] else 0


def monitor_options(monitoring: dict) -> list[str]:
    """What the recipe's `monitoring` block tells every monitor: its sampling interval, the
    Pushgateway to push to, the port of its own Prometheus endpoint and which names it
    exposes there."""
    options = ["--interval", f"{monitoring['interval']}s"]
    if monitoring["pushgateway"]:
        options += ["--enable-monitoring", "--pushgateway-node", monitoring["pushgateway"]]
    port = monitor_prometheus_port(monitoring)
    if port:
        options += ["--prometheus-port", str(port)]
    compat = monitoring["prometheus"]["compat_names"]
    if compat != "none" and (port or monitoring["pushgateway"]):
        options += ["--compat-names", compat]   # the reference's names too
    return options


def loss_tolerated(data: dict, role: str) -> bool:
    """Whether the session goes on without a lost agent: always without a monitor (telemetry is
    not what the benchmark measures), without an executor when on_executor_loss is continue."""
    return role == "monitor" or (role == "executor" and data["on_executor_loss"] == "continue")


class StopRequested(Exception):
    """Raised inside the lifecycle when `stop()` was called; not an error."""


class Session:
    """One session's state and lifecycle thread (start(), stop(), wait(), status())."""

    def __init__(self, session_id: str, *, coordinator, recipe_text: str | None = None,
                 recipe_path: str | None = None, executors: int | None = None,
                 results_root: Path | None = None, write_report: bool = True,
                 launcher: str = "local", launcher_options: dict | None = None):
        """`launcher` names the backend (launch/base.py LAUNCHERS) and `launcher_options` are
        its own; the default runs processes on this machine, `executors` of them if given."""
        if (recipe_text is None) == (recipe_path is None):
            raise ValueError("give exactly one of recipe_text, recipe_path")
        self.session_id = check_id(session_id, "session id")   # it names the run directory
        self.coordinator = coordinator
        self._recipe_text = recipe_text
        self._recipe_path = recipe_path
        self._make_launcher = functools.partial(
            make_launcher, launcher, **(launcher_options if launcher_options is not None else
                                        {"host": coordinator.host, "executors": executors}))
        self.write_report = write_report
        self._results_root = results_root or coordinator.results_root
        self.registry = AgentRegistry(session_id, sample_endpoint="",
                                      heartbeat_interval_s=0.5, lease_s=5.0)
        self.feed = SessionFeed()
        self.state = pb.PENDING
        self.scenario = ""
        self.run_dir = Path()
        self.bus_endpoint = ""
        self.trials: list = []
        self.trial_results: list[dict] = []   # one per trial run now: id, directory, passed, summary
        self.earlier_results: list[dict] = []  # the same for trials skipped as passed before
        self.skipped = 0
        self.run_number = 0                   # which run of the session this is, once it records
        self._earlier_runs: list[dict] = []   # the runs session.json listed before this one
        self._run_started = datetime.now(timezone.utc).isoformat()
        self._trials_begun: list[str] = []    # trials this run started an attempt of
        self._skipped_ids: list[str] = []
        self.current: dict | None = None      # running trial: trial, index, started
        self.error: HpcbenchError | None = None
        self.started = time.monotonic()
        self.ended: float | None = None
        self.phases: list[dict] = []          # every state entered, with seconds since start
        self.server_version: str | None = None  # the server's own, once healthy ("unknown")
        self._stop = threading.Event()
        self._stop_reason = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"session-{session_id}",
                                        daemon=True)
        self.launcher: Launcher | None = None
        self.supervisor = None                # the launcher's Supervisor (children, logs)
        self._targets: dict[str, list[str]] = {}  # executor agent id -> the endpoint URLs it loads
        self._lost: dict[str, str] = {}       # agent id -> why it was lost (announced once)
        self.recipe = None
        self.recording = None
        self.search = None                    # a capacity search's state (capacity.py)

    # -- public -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, reason: str = "stopped on request") -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._done.wait(timeout_s)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def status(self) -> pb.SessionStatus:
        status = pb.SessionStatus(
            session_id=self.session_id, scenario=self.scenario, state=self.state,
            state_name=pb.SessionState.Name(self.state), trials_total=len(self.trials),
            trials_done=len(self.trial_results), trials_skipped=self.skipped,
            elapsed_s=(self.ended or time.monotonic()) - self.started, run_dir=str(self.run_dir),
            bus_endpoint=self.bus_endpoint, agents=self.registry.info(),
            rejected_calls=self.coordinator.token_check.rejected)
        if self.error is not None:
            status.error_code, status.error_message = self.error.code, self.error.render()
        current = self.current
        if current is not None:
            status.trial.CopyFrom(_trial_progress(current, len(self.trials)))
        return status

    def snapshot_message(self, snapshot: dict) -> pb.Snapshot:
        from hpcbench.coordinator.session.recording import snapshot_message

        return snapshot_message(self.session_id, snapshot)

    def all_results(self) -> list[dict]:
        """The final attempt of every trial of the sweep that has a verdict, in sweep order:
        those measured now and those that passed in an earlier run (failed ones are always
        measured again, so none is taken from before)."""
        return sorted(self.earlier_results + self.trial_results, key=lambda r: r["index"])

    def trial_problems(self) -> list[str]:
        """Why each trial whose final attempt failed failed, one line per trial (the CLI and
        the Slurm job exit E004 on any). A capacity search has none: a probe over its error
        ceiling is part of the answer, and one not measured soundly stops the search (E004)."""
        if self.search is not None:
            return []
        return [f"{result['trial_id']}{' (earlier run)' if result.get('earlier') else ''}: "
                f"{'; '.join(result['problems'])}"
                for result in self.all_results() if not result["passed"]]

    def results(self) -> pb.ResultsReply:
        reply = pb.ResultsReply(session_id=self.session_id, run_dir=str(self.run_dir))
        for result in self.all_results():
            reply.trials.add(trial_id=result["trial_id"], directory=str(result["directory"]),
                             passed=result["passed"],
                             summary_json=json.dumps(result["summary"], default=str))
        return reply

    # -- lifecycle --------------------------------------------------------------------------
    def _main(self) -> None:
        outcome = pb.FAILED
        try:
            self._lifecycle()
            outcome = pb.STOPPED if self._stop.is_set() else pb.COMPLETED
        except StopRequested:
            outcome = pb.STOPPED
        except HpcbenchError as error:
            self.error = error
        except Exception as error:  # a bug must still end the session cleanly, with a reason
            self.error = self._internal_error(error)
        finally:
            try:
                self._teardown(outcome)
            except Exception as error:
                self.error = self.error or self._internal_error(error)
                outcome = pb.FAILED
            self.ended = time.monotonic()
            self._enter(outcome)   # the last state event, then session_end, then the bus closes
            if self.recording is not None:
                self.recording.close()
            self.feed.close()
            self._done.set()

    def _internal_error(self, error: Exception) -> HpcbenchError:
        self._log_traceback()
        return HpcbenchError("E005", f"internal error: {type(error).__name__}: {error}",
                             ("the session stopped; results so far are kept",
                              f"traceback in {self.run_dir / 'logs' / 'coordinator.log'}"))

    def _log_traceback(self) -> None:
        import traceback

        known = self.run_dir != Path()   # before VALIDATING sets it, use the coordinator's
        log_dir = (self.run_dir if known else self.coordinator.run_dir) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "coordinator.log", "a") as log:
            traceback.print_exc(file=log)

    def _lifecycle(self) -> None:
        from hpcbench.recipes import expand_trials

        self._enter(pb.VALIDATING)
        self.recipe = self._load_recipe()
        self.scenario = self.recipe.scenario
        root = Path(self._results_root or self.recipe.data["results_dir"])
        self.run_dir = root / self.scenario / self.session_id
        check_private_dir(self.run_dir)   # it will hold the token: only we may write there
        self.launcher = self._make_launcher(self.run_dir, self.recipe)
        self.supervisor = self.launcher.supervisor
        self.recording = self._open_recording()
        self.bus_endpoint = self.recording.bus_endpoint
        self.registry.sample_endpoint = self.recording.sample_endpoint
        self.coordinator.session_ready(self)

        self._enter(pb.EXPANDING)
        if "search" in self.recipe.data:
            todo, earlier = self._resume_search()
        else:
            self.trials = expand_trials(self.recipe)
            # only a passed trial is skipped: failed and cut ones are measured again
            passed = self.recording.passed_trials()
            todo = [trial for trial in self.trials if trial.id not in passed]
            earlier = [trial for trial in self.trials if trial.id in passed]
        self._skipped_ids = [trial.id for trial in earlier]
        self.skipped = len(self._skipped_ids)
        self.earlier_results = [self.recording.earlier_result(trial) for trial in earlier]
        self._event(Event.TRIALS, total=len(self.trials) + (len(todo) if self.search else 0),
                    skipped=sorted(self._skipped_ids))
        if earlier:  # the server that measured them; replaced below if this run deploys one
            self.server_version = self.recording.earlier_session().get("server_version")
        if not todo:
            return    # nothing to measure: nothing is written (see _teardown)
        self._record_run()
        check_free_space(self.run_dir, len(todo))

        self._enter(pb.DEPLOYING)
        service, deployed = self._deploy_service()
        endpoints = self.recipe.data["endpoints"] or [
            url for url, _ in deployed.values() if url is not None]
        endpoints = [url.rstrip("/") for url in endpoints]
        # monitors and executors start now so that their start-up overlaps the server's;
        # executors only register and wait for commands, monitors retry an unready server
        self._spawn_monitors(service, deployed, endpoints)
        self._spawn_executors()
        self._enter(pb.PREPARING)
        self._prepare_service(service, endpoints)
        self._enter(pb.STARTING_MONITORS)
        self._wait_for_telemetry()
        self._enter(pb.STARTING_EXECUTORS)
        executors = self._start_executors()
        self._targets = self._assign_targets(endpoints)
        self._event(Event.TARGETS, executors=self._targets)
        self._enter(pb.RUNNING)
        extras = service.request_extras(self.recipe.workload)
        if self.search is not None:
            self._run_search(todo[0], executors, extras)
            return
        for trial in todo:
            if self._stop.is_set():
                break
            self._run_trial(trial, executors, extras)

    def _resume_search(self) -> tuple[list, list]:
        """A capacity search (capacity.py): ([the next probe's trial] or [] when the search is
        over, the probes an earlier run of the session recorded, taken as they are)."""
        from hpcbench.coordinator.session.capacity import CapacitySearch

        self.search = CapacitySearch(self.recipe)
        earlier = self.search.replay(self.run_dir)
        self.trials = list(earlier)
        following = self.search.next_trial(len(self.trials))
        return ([following] if following is not None else []), earlier

    def _run_search(self, trial, executors: list[str], extras: dict) -> None:
        """Probe after probe, each chosen from the verdicts so far, until the search stops
        (or the session is stopped: the next run goes on from the recorded probes)."""
        while trial is not None and not self._stop.is_set():
            self.trials.append(trial)
            if self.search.take_recorded(self.run_dir, trial):   # measured by an earlier run
                self._skipped_ids.append(trial.id)
                self.skipped = len(self._skipped_ids)
                self.earlier_results.append(self.recording.earlier_result(trial))
                trial = self.search.next_trial(len(self.trials))
                continue
            measured = len(self.trial_results)
            self._run_trial(trial, executors, extras)
            if len(self.trial_results) == measured:   # cut short: no verdict
                return
            self.search.record(trial, self.trial_results[-1]["probe"])
            self._record_run()
            trial = self.search.next_trial(len(self.trials))

    def _enter(self, state: int) -> None:
        self.state = state
        self.phases.append({"state": pb.SessionState.Name(state),
                            "at_s": round(time.monotonic() - self.started, 3)})
        self._event(Event.STATE)
        self.feed.touch()

    def _event(self, event: Event, **fields) -> None:
        if self.recording is not None:
            self.recording.publish_event(event, pb.SessionState.Name(self.state), **fields)

    def _check(self) -> None:
        """Called while waiting: raise on a stop request or a crashed child process."""
        if self._stop.is_set():
            raise StopRequested(self._stop_reason)
        self._check_children()

    def _check_children(self) -> None:
        for child in self.supervisor.failed_children() if self.supervisor else ():
            role = child.name.split("-")[0]
            status = child.process.returncode
            reason = f"its process exited with status {status}" + (
                f" ({signal.Signals(-status).name})" if status < 0 and -status in
                signal.valid_signals() else "")
            if role in ("monitor", "executor"):
                self._announce_lost(child.name, role, reason, status=status)
            # telemetry is not what the benchmark measures: the session goes on without a
            # monitor; an executor's trial gets no report from it and is flagged
            if loss_tolerated(self.recipe.data, role):
                child.expected_exit = True
                self.registry.mark_lost(child.name)
                continue
            code = "E001" if role == "service" else "E002"
            raise HpcbenchError(code, f"{child.name} exited with status {status} "
                                f"during {pb.SessionState.Name(self.state)}",
                                (f"log: {child.log_path}", *child.log_tail(8)))
        for agent in self.registry.lost_agents():
            age = agent.lease_age()
            self._announce_lost(agent.agent_id, pb.AgentRole.Name(agent.role).lower(),
                                f"no heartbeat for {age:.1f}s (lease {self.registry.lease_s:g}s)",
                                heartbeat_age_s=age)

    def _announce_lost(self, agent_id: str, role: str, reason: str, **details) -> None:
        """An agent whose process ended or whose heartbeats stopped (lease run out): one
        `monitor_lost` / `executor_lost` event on the bus. A monitor's node's telemetry simply
        ends there; a lost executor's share of the running trial is missing from then on, so
        the aggregator marks the trial's intervals partial."""
        if agent_id in self._lost:
            return
        self._lost[agent_id] = reason
        if role == "executor" and self.current is not None:
            self.recording.mark_executor_lost(self.current["trial"].id, agent_id)
        self._event(Event.EXECUTOR_LOST if role == "executor" else Event.MONITOR_LOST,
                    agent=agent_id, reason=reason, **details)

    def _load_recipe(self):
        return load_recipe_source(self._recipe_text, self._recipe_path)

    def _open_recording(self):
        from hpcbench.coordinator.session.recording import SessionRecording

        return SessionRecording(self.recipe, self.session_id, self.run_dir, self.coordinator.host,
                                single_machine=self.launcher.single_machine,
                                control_tls=self.coordinator.tls,
                                on_snapshot=self.feed.publish_snapshot)

    def _deploy_service(self):
        """Start the service on every server node the launcher names (none when the recipe
        gives `endpoints`): (plugin, {node: (base URL or None, local pid or None)})."""
        from hpcbench.servers.registry import get_service

        service = get_service(self.recipe.workload["service"])
        deployed = {}
        for context in self.launcher.service_contexts():
            spec = service.launch(context)
            pid = self.launcher.start_service(context.node, spec)
            deployed[context.node] = (spec.base_url, pid)
            self._event(Event.SERVICE, node=context.node, argv=spec.argv, url=spec.base_url, pid=pid)
        return service, deployed

    def _prepare_service(self, service, endpoints: list[str]) -> None:
        """Every endpoint healthy (when health checks are on), then the model prepared there
        with the recipe's service_config; then the server's version, for the report."""
        from hpcbench.servers.plugin import recorded_server_version

        servers = self.recipe.data["servers"]
        health = servers["health_check"]
        if health.get("endpoint"):
            service = service.with_health_endpoint(health["endpoint"])
        for url in endpoints:
            if health["enabled"]:
                self._wait_healthy(service, url, health)
            self._check()
            service.prepare(url, self.recipe.workload["model"], health["timeout"],
                            service_config=servers["service_config"])
        if endpoints:
            self.server_version = recorded_server_version(service, endpoints[0],
                                                          SERVER_VERSION_TIMEOUT_S)

    def _wait_healthy(self, service, url: str, health: dict) -> None:
        wait_for_health(service, url, health, check=self._check, pause=self._stop.wait)

    def _spawn_monitors(self, service, deployed: dict, endpoints: list[str]) -> None:
        """A monitor per node; one on a server node scrapes its server's /metrics and samples
        its process when it is local. Endpoints nobody deployed are scraped by the first."""
        monitoring = self.recipe.data["monitoring"]
        if not monitoring["enabled"]:
            return
        nodes = self.launcher.monitor_nodes()
        self.recording.admit(monitor_nodes=nodes)
        self.registry.monitor_count = len(nodes)
        prometheus_port = self._monitor_prometheus_port()
        metrics_path = service.metrics_path_for(self.recipe.data["servers"]["service_config"])
        for node in nodes:
            url, pid = deployed.get(node, (None, None))
            if not deployed and node == nodes[0] and endpoints:
                url = endpoints[0]
            args = ["--coordinator-telemetry", self.recording.sample_endpoint,
                    "--coordinator", self.coordinator.address, "--agent-id", f"monitor-{node}",
                    "--run-id", self.session_id, "--node", node,
                    "--csv", str(self.run_dir / "telemetry" / f"{node}.csv"),
                    *monitor_options(monitoring)]
            if url and metrics_path:
                args += ["--server-metrics", url.rstrip("/") + metrics_path]
            if pid:
                args += ["--service-pid", str(pid)]
            if prometheus_port:
                args += ["--prometheus-port-file", str(self._monitor_port_file(node))]
            self.launcher.start_monitor(node, args, self._agent_env())

    def _monitor_prometheus_port(self) -> int:
        return monitor_prometheus_port(self.recipe.data["monitoring"])

    def _monitor_port_file(self, node: str) -> Path:
        return self.run_dir / "telemetry" / f"{node}.prometheus.port"

    def _wait_for_telemetry(self) -> None:
        """Load starts once every monitor reported, and every monitor that scrapes the
        server's /metrics got an answer (monitors start with the server and find it not yet
        listening), so telemetry (GPU energy, the server's own view) covers the first trial
        from its start. A monitor that stays silent is announced on the bus and the session
        goes on: telemetry is not what the benchmark measures."""
        if not self.recipe.data["monitoring"]["enabled"]:
            return
        nodes = self.launcher.monitor_nodes()
        deadline = time.monotonic() + MONITOR_FIRST_REPORT_S
        while True:
            self._check()   # a monitor that died is announced lost: no use waiting for it
            unanswered = self.recording.server_metrics.unanswered_nodes()
            silent = {node for node in nodes
                      if (node not in self.recording.telemetry_nodes or node in unanswered)
                      and f"monitor-{node}" not in self._lost}
            if not silent:
                break
            if time.monotonic() >= deadline:
                self._event(Event.MONITORS_SILENT, nodes=sorted(silent))
                break
            self._stop.wait(0.05)
        self._check_monitor_endpoints(nodes)

    def _check_monitor_endpoints(self, nodes: list[str]) -> None:
        """A monitor that ended before serving the Prometheus endpoint the recipe asks for (its
        port taken, mostly) fails the session as the coordinator's own port does: E005 naming
        the port and the key, before any load."""
        port = self._monitor_prometheus_port()
        for node in nodes if port else ():
            if f"monitor-{node}" in self._lost and not self._monitor_port_file(node).exists():
                child = next(child for child in self.supervisor.children
                             if child.name == f"monitor-{node}")
                raise HpcbenchError(
                    "E005", f"the monitor on {node} could not serve Prometheus metrics on port "
                    f"{port}", ("set the recipe's monitoring.prometheus.monitor_port to a port "
                                "free on every node, or 0 for no monitor endpoints",
                                f"log: {child.log_path}", *child.log_tail(3)))

    def _spawn_executors(self) -> None:
        """Start the executor agent processes; they register and wait for commands."""
        nodes = self.launcher.executor_nodes()
        self.registry.executor_count = len(nodes)
        for index, node in enumerate(nodes):
            agent_id = f"executor-{index}"
            self.launcher.start_executor(
                agent_id, node, ["--coordinator", self.coordinator.address, "--node", node],
                self._agent_env())

    def _agent_env(self) -> dict[str, str]:
        """What an agent (executor, monitor) needs beyond --coordinator to register: the
        session, its token file, the control certificate when the control port speaks TLS,
        and the CURVE key file its sample/telemetry PUSH connects with when CURVE is on."""
        env = {"HPCBENCH_SESSION": self.session_id,
               "HPCBENCH_TOKEN_FILE": str(self.coordinator.token_file)}
        if self.coordinator.tls:
            env["HPCBENCH_TLS_CERT"] = str(self.coordinator.run_dir / tls.CERT_FILE)
        if self.recording.curve_file is not None:
            env["HPCBENCH_CURVE_KEYS"] = str(self.recording.curve_file)
        return env

    def _start_executors(self) -> list[str]:
        """Executors are ready when every one registered (E002 otherwise)."""
        count = self.registry.executor_count
        try:
            agents = self.registry.wait_for_agents(pb.EXECUTOR, count, REGISTRATION_TIMEOUT_S,
                                                   abort=self._check)
        except TimeoutError as error:
            raise HpcbenchError("E002", f"executors did not register: {error}",
                                (f"logs: {self.supervisor.log_dir}",)) from None
        return [agent.agent_id for agent in agents]

    def _assign_targets(self, endpoints: list[str]) -> dict[str, list[str]]:
        """Executor agent id -> its endpoints under the recipe's distribution_strategy (the
        same rule and seed as `hpcbench plan`): one each, or all of them under all-to-all."""
        from hpcbench.coordinator.launch.plan import assign_targets

        data = self.recipe.data
        strategy = data["orchestration"]["node_allocation"]["clients"]["distribution_strategy"]
        seed = data["metadata"].get("seed", data["workload"]["dataset"]["seed"])
        mapped = assign_targets(strategy, self.registry.executor_count, endpoints, seed)
        return {f"executor-{index}": list(urls) for index, urls in enumerate(mapped)}

    def _run_trial(self, trial, executors: list[str], extras: dict) -> None:
        workload = trial.workload
        self.current = {"trial": trial, "index": self.trials.index(trial),
                        "started": time.monotonic()}
        self.recording.begin_trial(trial, self.supervisor.log_dir, session_run=self.run_number)
        self._trials_begun.append(trial.id)
        self._record_run(running=trial.id)
        self._event(Event.TRIAL_START, trial=trial.id, index=trial.index, params=trial.params)
        self.feed.touch()
        executors = [agent.agent_id for agent in self.registry.agents(pb.EXECUTOR)
                     if agent.agent_id in executors and agent.state not in (pb.LOST, pb.GONE)]
        if not executors:
            raise HpcbenchError("E002", f"trial {trial.id}: no executor left",
                                (f"logs: {self.supervisor.log_dir}",))
        absent = [agent.agent_id for agent in self.registry.agents(pb.EXECUTOR)
                  if agent.agent_id not in executors]
        for agent_id in absent:          # lost in an earlier trial: this one lacks its share
            self.recording.mark_executor_lost(trial.id, agent_id)
        self.recording.admit(executors=executors)
        # all registered executors, lost ones included, so shares stay stable when one is lost
        executor_nodes = {agent.executor_index: agent.node
                          for agent in self.registry.agents(pb.EXECUTOR)}
        configs = []
        sample_modes = self.recording.choose_sample_mode(executors)
        for agent in self.registry.agents(pb.EXECUTOR):
            if agent.agent_id not in executors:
                continue
            # each executor keeps its index and share: a lost one's share is missing, flagged.
            # clients_per_node is per node: each executor runs its share, as `plan` shows
            share = with_executor_share(workload, agent.executor_index, executor_nodes)
            config = TrialConfig(run_id=self.session_id, trial_id=trial.id,
                                 executor_index=agent.executor_index,
                                 executor_count=self.registry.executor_count, node=agent.node,
                                 targets=self._targets[agent.agent_id], workload=share,
                                 request_extras=extras, samples=sample_modes[agent.agent_id])
            configs.append(config)
            self.registry.send(agent.agent_id, pb.CONFIGURE, trial.id, config.encode())
            self.registry.send(agent.agent_id, pb.START, trial.id)
        self.recording.trial_streams(trial.id, closed_loop_streams(configs))
        budget = (workload["warmup"] + workload["duration"] + workload["request_timeout"]
                  + TRIAL_GRACE_S)
        stop_sent = False

        def watch_trial() -> None:
            nonlocal stop_sent
            if self._stop.is_set() and not stop_sent:
                stop_sent = True
                for agent_id in executors:
                    self.registry.send(agent_id, pb.STOP, trial.id)
            self._check_children()

        try:
            reports = self.registry.wait_reports(trial.id, executors, budget, abort=watch_trial)
        except TimeoutError as error:
            raise HpcbenchError("E007", f"trial {trial.id} did not finish: {error}",
                                (f"logs: {self.supervisor.log_dir}",)) from None
        failed = [f"{agent_id}: {report.error}" for agent_id, report in reports.items()
                  if not report.ok]
        lost = [agent_id for agent_id in executors if agent_id not in reports]
        self._check_children()           # announces executors lost by their lease alone
        if failed:
            raise HpcbenchError("E004", f"trial {trial.id}: executors failed", failed)
        if lost and not loss_tolerated(self.recipe.data, "executor"):
            raise HpcbenchError("E002", f"trial {trial.id}: executors lost: {', '.join(lost)}",
                                ("on_executor_loss is 'stop'; set it to 'continue' to go on",))
        if stop_sent:
            # cut short: its raw samples stay in the .partial files, trial.stopped says why,
            # and a re-run of the session measures it again in full (keeping this attempt)
            self.recording.abort_trial(f"stopped: {self._stop_reason}")
            self._event(Event.TRIAL_STOPPED, trial=trial.id, reason=self._stop_reason)
            self.current = None
            return
        self.current["phase"] = "drain"
        result = self.recording.finish_trial(trial, reports, self._losses(trial, lost, absent),
                                              workload["error_threshold"], self.supervisor.log_dir,
                                              judge=self.search.judge if self.search else None)
        self.trial_results.append(result)
        probe = result["probe"]
        self._event(Event.TRIAL_END, trial=trial.id, passed=result["passed"],
                    problems=result["problems"],
                    **({"probe": {key: probe[key] for key in ("load", "run", "meets", "close")}}
                       if probe else {}))
        self.current = None
        self.feed.touch()

    def _losses(self, trial, lost: list[str], absent: list[str]) -> dict[str, dict]:
        """What the session knows of the executors missing from `trial`: lost during it (with
        its last heartbeat's counts) or before it (nothing of it)."""
        records = {agent.agent_id: agent for agent in self.registry.agents(pb.EXECUTOR)}
        losses = {}
        for agent_id in lost:
            record = records[agent_id]
            counted = record.trial_id == trial.id
            losses[agent_id] = {"reason": self._lost.get(agent_id, "sent no trial report"),
                                "recorded": record.trial_recorded if counted else 0,
                                "in_flight": record.trial_in_flight if counted else 0}
        for agent_id in absent:
            losses[agent_id] = {"reason": f"lost in an earlier trial: "
                                          f"{self._lost.get(agent_id, 'no heartbeat')}"}
        return losses

    def _teardown(self, outcome: int) -> None:
        """Stop every component, then record the session and write its report."""
        if self.state not in (pb.PENDING, pb.VALIDATING):
            self._enter(pb.TEARDOWN)
        self.registry.shutdown_all()
        if self.supervisor is not None:
            # executors quit on SHUTDOWN (their last batches flushed); the rest get SIGTERM
            # meanwhile, so the components stop side by side rather than one after another
            executors = [child for child in self.supervisor.children
                         if child.name.startswith("executor-")]
            self.supervisor.terminate([child for child in self.supervisor.children
                                    if child not in executors])
            self.supervisor.wait_exits(executors, timeout_s=2.0)
            self.supervisor.stop_all()
        if self.recording is not None:
            self._enter(pb.REPORTING)
            self.recording.abort_trial(self._cut_reason())   # a trial an error cut short
            # a run that measured nothing and completed changes no file
            write = self.run_number > 0 or outcome != pb.COMPLETED
            self.recording.finish(self._session_record(outcome) if write else
                                  {"state": pb.SessionState.Name(outcome), "error": None},
                                  write=write)
            if write:
                self._write_report()

    def _cut_reason(self) -> str:
        if self.error is not None:
            return f"{self.error.code}: {self.error.message}"
        if self._stop.is_set():
            return f"stopped: {self._stop_reason}"
        return "the session ended before the trial did"

    def _write_report(self) -> None:
        """report.html of the finished trials; a failure is logged and never costs results
        (`hpcbench report RUN_DIR` builds it again later)."""
        from hpcbench.coordinator.session.results import finished_trials

        if not self.write_report or not finished_trials(self.run_dir):
            return
        try:
            from hpcbench.coordinator.report import build_report
        except ModuleNotFoundError:
            return   # an installation without the reports subpackage
        try:
            build_report(self.run_dir)
        except Exception as error:  # a report bug must not turn a measured run into a failure
            self._log_traceback()
            log.warning("report not written: %s: %s; results are intact, retry with `hpcbench "
                        "report %s` (traceback in %s)", type(error).__name__, error, self.run_dir,
                        self.run_dir / "logs" / "coordinator.log")

    def _record_run(self, running: str | None = None) -> None:
        """session.json while this run measures: the run RUNNING (so that a run whose
        coordinator is killed is still listed, INTERRUPTED, by the next one)."""
        from hpcbench.coordinator.session import session_file

        session_file.write(self.run_dir, self._session_record(None, running))

    def _session_record(self, final_state: int | None, running: str | None = None) -> dict:
        """session.json (session_file.py): the earlier runs, this one (RUNNING until
        `final_state`), every trial's attempts and verdicts read back from disk."""
        from hpcbench.coordinator.session import session_file

        if not self.run_number:
            self._earlier_runs = session_file.earlier_runs(self.recording.earlier_session())
            self.run_number = session_file.next_run_number(self._earlier_runs)
        ended = final_state is not None
        run = {"run": self.run_number, "started": self._run_started,
               "ended": datetime.now(timezone.utc).isoformat() if ended else None,
               "state": pb.SessionState.Name(final_state) if ended else session_file.RUNNING,
               "error": self.error.render() if self.error else None,
               "trials_run": list(self._trials_begun), "trials_skipped": self._skipped_ids,
               "server_version": self.server_version,
               "elapsed_s": time.monotonic() - self.started, "phases": list(self.phases)}
        record = session_file.build(
            session_id=self.session_id, scenario=self.scenario, session_dir=self.run_dir,
            trials=self.trials, runs=[*self._earlier_runs, run],
            server_version=self.server_version, ended=ended, running=running)
        if self.search is not None:
            record["search"] = self.search.result()
        return record


def _trial_progress(current: dict, total: int) -> pb.TrialProgress:
    trial = current["trial"]
    elapsed = time.monotonic() - current["started"]
    warmup, duration = trial.workload["warmup"], trial.workload["duration"]
    phase = current.get("phase") or ("warmup" if elapsed < warmup else
                                     "measured" if elapsed < warmup + duration else "drain")
    return pb.TrialProgress(trial_id=trial.id, index=current["index"], total=total, phase=phase,
                            elapsed_s=elapsed, duration_s=warmup + duration)



def closed_loop_streams(configs: list[TrialConfig]) -> int | None:
    """The closed-loop streams a trial's executors run, each share resolved as its executor
    resolves it; None under an open-loop schedule (no fixed number of clients) or when a share
    does not resolve (the executor reports that itself)."""
    streams = 0
    for config in configs:
        try:
            load = LoadConfig.from_workload(config.workload, config.targets,
                                            config.executor_index, config.executor_count)
        except HpcbenchError:
            return None
        if load.load.pattern != "closed":
            return None
        streams += load.concurrency
    return streams if configs else None
