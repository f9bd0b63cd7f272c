"""Every key the recipe schema accepts is read by a component, or is only a check.

The test walks recipes/recipe.schema.json to every key (leaf) it accepts and fails on one that
is not listed here: a new key needs a consumer. Each listed key names the component that
consumes it (sbatch options, srun step options, role placement, server launch commands,
executor configurations, the session's health check, monitors' options, images, results...)
and a distinctive value. The test sets the key to that value in an otherwise equal recipe and
shows that what the component produces changes (and, where given, that the value is in it):
a key that were accepted and never read would leave it as it was.

A few keys accept only what changes nothing (`workload.component: inference`, the only kind of
benchmark; `distributed.backend: ray`, the only backend; `service_config.model`, which may only
repeat `workload.model`): for those the test shows that any other value is refused with E006.

Servers, Slurm and Apptainer do not run here: each consumer is the function the session or
run.sbatch calls with the recipe; the health check runs against a real HTTP server on a local
socket, and the session's results objects open real sockets.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.measure.histogram import Histogram
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.launch import slurm
from hpcbench.coordinator.launch.local import LocalLauncher
from hpcbench.coordinator.launch.plan import place_roles
from hpcbench.coordinator.launch.sbatch_job import SlurmJob, job_images, print_modules
from hpcbench.coordinator.session import lifecycle, verdicts
from hpcbench.coordinator.session.capacity import CapacitySearch
from hpcbench.coordinator.session.recording import SessionRecording
from hpcbench.coordinator.session.sample_mode import aggregation_mode
from hpcbench.executor.config import LoadConfig, with_executor_share
from hpcbench.recipes import expand_trials, recipe_from_dict, validate
from hpcbench.recipes.schema import recipe_schema
from hpcbench.servers.registry import get_service, launch_commands
from tests.support.ports import free_port
from tests.support.sample_batches import make_batch


def schema_keys() -> list[str]:
    """Dotted paths of every key the schema accepts (objects with properties are walked;
    free-form content, e.g. service_config's plugin keys or env's names, is not)."""
    definitions = recipe_schema()["$defs"]
    keys: list[str] = []

    def walk(schema: dict, path: str) -> None:
        while "$ref" in schema:
            schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        if schema.get("type") == "object" and schema.get("properties"):
            for name, child in schema["properties"].items():
                walk(child, f"{path}.{name}" if path else name)
        else:
            keys.append(path)

    walk(recipe_schema(), "")
    return keys


# --- recipes and edits --------------------------------------------------------------------------

LOCAL = {"scenario": "keys", "workload": {"service": "simulator", "model": "sim-llama"}}
SLURM = {"scenario": "keys", "partition": "gpu", "account": "acct",
         "orchestration": {"mode": "slurm"},
         "resources": {"servers": {"gpus": 4}},
         "workload": {"service": "vllm", "model": "llama"},
         "artifacts": {"service": {"path": "vllm.sif"}}}


def edited(base: dict, path: str, value: object) -> dict:
    data = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


def with_(base: dict, *changes: tuple[str, object]) -> dict:
    for path, value in changes:
        base = edited(base, path, value)
    return base


# --- consumers: what a component produces from a recipe ----------------------------------------

def nodes_of(data: dict) -> list[str]:
    return [f"node{index}" for index in range(1, data["orchestration"]["total_nodes"] + 1)]


def sbatch(raw: dict, tmp: Path) -> object:
    """run.sbatch's job: the sbatch options `hpcbench submit` builds."""
    return slurm.sbatch_options(recipe_from_dict(raw).data)


def steps(raw: dict, tmp: Path) -> object:
    """Each role's srun step options (SrunLauncher)."""
    data = recipe_from_dict(raw).data
    return {role: slurm.role_resources(data, role) for role in slurm.ROLES}


def placement(raw: dict, tmp: Path) -> object:
    """Who runs where (`hpcbench plan`, run.sbatch)."""
    recipe = recipe_from_dict(raw)
    return place_roles(recipe, nodes_of(recipe.data)).to_dict()


def launch(raw: dict, tmp: Path) -> object:
    """Every server node's command and environment (the service plugin's launch)."""
    recipe = recipe_from_dict(raw)
    where = place_roles(recipe, nodes_of(recipe.data))
    return launch_commands(recipe, where, run_dir=tmp, job_id="4242")


def executors(raw: dict, tmp: Path) -> object:
    """What every executor runs in every trial: the session's share of the trial workload, as
    the executor resolves it (LoadConfig), with the service's extra request fields."""
    recipe = recipe_from_dict(raw)
    where = place_roles(recipe, nodes_of(recipe.data))
    service = get_service(recipe.workload["service"])
    extras = service.request_extras(recipe.workload)
    slots = where.executors
    nodes = {index: slot.node for index, slot in enumerate(slots)}
    configs = []
    for trial in expand_trials(recipe):
        for index, slot in enumerate(slots):
            share = with_executor_share(trial.workload, index, nodes)
            config = LoadConfig.from_workload(share, list(slot.targets), index, len(slots),
                                              trial_id=trial.id, request_extras=extras)
            configs.append(asdict(config))
    return configs


class HealthProbe(BaseHTTPRequestHandler):
    """A real HTTP server's handler: /health and /v1/models answer 200, anything else 404;
    every path asked is recorded."""

    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).asked.append(self.path)
        body = b'{"data": [{"id": "sim-llama"}]}'
        self.send_response(200 if self.path in ("/health", "/v1/models") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def health(raw: dict, tmp: Path) -> object:
    """The session's health check (lifecycle.wait_for_health, with the recipe's endpoint)
    against a real server: the paths it asked and how it ended."""
    recipe = recipe_from_dict(raw)
    settings = recipe.data["servers"]["health_check"]
    handler = type("Handler", (HealthProbe,), {"asked": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    service = get_service(recipe.workload["service"])
    if settings.get("endpoint"):
        service = service.with_health_endpoint(settings["endpoint"])
    try:
        if settings["enabled"]:
            lifecycle.wait_for_health(service, f"http://127.0.0.1:{server.server_port}",
                                      settings)
        outcome = "healthy"
    except HpcbenchError as error:
        outcome = error.message.split(" not healthy ")[1]
    finally:
        server.shutdown()
        server.server_close()
    return {"outcome": outcome, "asked": sorted(set(handler.asked)), "checks": handler.asked}


def monitors(raw: dict, tmp: Path) -> object:
    """What the session tells every monitor (lifecycle.monitor_options)."""
    return lifecycle.monitor_options(recipe_from_dict(raw).data["monitoring"])


def images(raw: dict, tmp: Path) -> object:
    """The images run.sbatch makes sure of (pulls, checks) before any step."""
    recipe = recipe_from_dict(raw)
    return job_images(recipe.data, place_roles(recipe, nodes_of(recipe.data)))


def executor_loss(raw: dict, tmp: Path) -> object:
    """Whether the session goes on without a lost executor."""
    return lifecycle.loss_tolerated(recipe_from_dict(raw).data, "executor")


def sample_mode(raw: dict, tmp: Path) -> object:
    """How a trial of 8 executors sends its samples (raw batches or histograms)."""
    return aggregation_mode(recipe_from_dict(raw).data["aggregation"], 8)


def run_directory(raw: dict, tmp: Path) -> object:
    """Where run.sbatch puts the session's results (relative to the submit directory)."""
    recipe = recipe_from_dict(raw)
    job = SlurmJob(tmp / "recipe.yaml")
    allocation = slurm.Allocation("4242", ("node1", "node2"), {"node1": "10.0.0.1",
                                                               "node2": "10.0.0.2"})
    saved = os.environ.get("SLURM_SUBMIT_DIR")
    os.environ["SLURM_SUBMIT_DIR"] = str(tmp)
    try:
        job._open_run_dir(recipe, allocation, place_roles(recipe, list(allocation.nodes)))
    finally:
        if saved is None:
            del os.environ["SLURM_SUBMIT_DIR"]
        else:
            os.environ["SLURM_SUBMIT_DIR"] = saved
    return str(job.run_dir.relative_to(tmp))


def modules(raw: dict, tmp: Path) -> object:
    """What run.sbatch loads with `module load`."""
    path = tmp / "modules.yaml"
    path.write_text(json.dumps(raw))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_modules(path)
    return out.getvalue()


def recording(raw: dict, tmp: Path) -> object:
    """The session's recording: how its sockets are protected, the port of its Prometheus
    endpoint, and the recipe kept with a trial's results."""
    recipe = recipe_from_dict(raw)
    session_dir = tmp / "results" / recipe.scenario / "s1"
    session_dir.mkdir(parents=True, exist_ok=True)
    record = SessionRecording(recipe, "s1", session_dir, "127.0.0.1", single_machine=True,
                              control_tls=False)
    try:
        trial = expand_trials(recipe)[0]
        record.begin_trial(trial, tmp)
        record.abort_trial("probe")
        port_file = session_dir / "prometheus.port"
        kept = (session_dir / trial.id / "recipe.yaml").read_text()
        return {"protection": record.protection,
                "prometheus_port": port_file.read_text() if port_file.exists() else None,
                "kept": kept[kept.index("metadata:"):].split("\n", 4)[:4]}
    finally:
        record.finish({"state": "COMPLETED", "error": None}, write=False)   # as a session ends
        record.close()


def goodput(raw: dict, tmp: Path) -> object:
    """The aggregator's goodput for a trial with the recipe's SLOs (as the session opens it)."""
    trial = expand_trials(recipe_from_dict(raw))[0]
    aggregator = Aggregator(run_id="run-1")
    aggregator.open_trial("t1", trial.workload["slo"])
    aggregator.ingest(make_batch(n=400, chunks=9))
    overall = aggregator.close_trial("t1").overall
    return {key: value for key, value in overall.items() if "good" in key}


def verdict(raw: dict, tmp: Path) -> object:
    """The verdict of a trial with 5 % failed requests (the session passes the trial's
    error_threshold)."""
    trial = expand_trials(recipe_from_dict(raw))[0]
    overall = {"requests": 100, "error_total": 5}
    return verdicts.decide(overall, trial.workload["error_threshold"])


def capacity_search(raw: dict, tmp: Path) -> object:
    """The session's capacity search (coordinator/session/capacity.py) against a synthetic
    server whose latencies grow with the load: the trials it probes and their verdicts."""
    search = CapacitySearch(recipe_from_dict(raw))
    index = 0
    while (trial := search.next_trial(index)) is not None and index < 40:
        load = trial.params[search.space.axis]
        values_ms = np.linspace(10 * load - 30, 10 * load + 30, 50).clip(1)
        histograms = {metric: Histogram() for metric in ("ttft", "itl", "tpot", "e2e")}
        for histogram in histograms.values():
            histogram.record_many((values_ms * 1e6).astype(np.int64))
        overall = {"requests": 50, "error_total": 1}
        probe = search.judge({"overall": overall}, histograms, {"problems": []})
        search.record(trial, probe)
        index += 1
    return search.result()


def monitor_host(raw: dict, tmp: Path) -> object:
    """Where a monitor's Prometheus endpoint listens (the launcher's choice)."""
    launcher = LocalLauncher(tmp, recipe_from_dict(raw), host="127.0.0.1")
    return launcher.prometheus_host("localhost")


# --- every key: (consumer, value, base recipe, text its output then shows) ---------------------

@dataclass(frozen=True)
class Probe:
    consumer: Callable[[dict, Path], object]
    value: object
    base: dict = None  # type: ignore[assignment]   # LOCAL unless given
    shows: str | None = None

    @property
    def recipe(self) -> dict:
        return self.base if self.base is not None else LOCAL


VLLM = with_(SLURM, ("runtime", "process"))
RAY = with_(VLLM, ("orchestration.node_allocation.servers.nodes", 2),
            ("resources.servers.gpus", 2),
            ("servers.service_config.distributed", {"enabled": True, "tensor_parallel_size": 2}))
APPTAINER = with_(SLURM, ("runtime", "apptainer"))
LLAMA = with_(LOCAL, ("workload.service", "llamacpp"),
              ("servers.service_config.model_path", "tiny.gguf"))
NORMAL = {"distribution": "normal", "mean": 100, "stddev": 10, "min": 10, "max": 500}
FAILING = with_(LOCAL, ("servers.health_check", {"endpoint": "/missing", "retries": 2,
                                                 "interval": 0.02, "timeout": 30}))
PROMETHEUS = with_(LOCAL, ("monitoring.prometheus", {"enabled": True, "port": free_port(),
                                                     "monitor_port": 0}))
TWO_SERVERS = with_(SLURM, ("orchestration.node_allocation", {
    "servers": {"nodes": 2}, "clients": {"nodes": 1, "executors_per_node": 2}}))

SEARCHING = with_(LOCAL, ("search", {"axis": "concurrency", "low": 1, "high": 32,
                                     "resolution": 1, "max_error_rate": 0.05,
                                     "slo": {"itl": {"percentile": 50, "max": "65ms"}}}))
SEARCH_ALL = with_(SEARCHING, ("search.slo", {metric: {"percentile": 50, "max": "65ms"}
                                              for metric in ("ttft", "itl", "tpot", "e2e")}))

PROBES: dict[str, Probe] = {
    "scenario": Probe(sbatch, "other-name", shows="--job-name=hpcbench-other-name"),
    "partition": Probe(sbatch, "gpu-big", SLURM, "--partition=gpu-big"),
    "account": Probe(sbatch, "p4242", SLURM, "--account=p4242"),
    "qos": Probe(sbatch, "urgent", SLURM, "--qos=urgent"),
    "modules": Probe(modules, ["Apptainer/1.3", "CUDA"], shows="Apptainer/1.3 CUDA"),
    "repetitions": Probe(executors, 3, shows="rep-3"),
    "runtime": Probe(launch, "apptainer", VLLM, "apptainer exec --nv"),
    "endpoints": Probe(placement, ["http://10.9.8.7:8000"], shows="http://10.9.8.7:8000"),
    "on_executor_loss": Probe(executor_loss, "stop"),
    "aggregation.mode": Probe(sample_mode, "histograms", shows="histograms"),
    "aggregation.histograms_from": Probe(sample_mode, 4, shows="histograms"),
    "results_dir": Probe(run_directory, "elsewhere", SLURM, "elsewhere/keys/4242"),
    "orchestration.mode": Probe(launch, "local", SLURM),     # the runtime default follows it
    "orchestration.total_nodes": Probe(sbatch, 9, SLURM, "--nodes=9"),
    "orchestration.node_allocation.servers.nodes": Probe(placement, 3, SLURM),
    "orchestration.node_allocation.clients.nodes": Probe(placement, 3, SLURM),
    "orchestration.node_allocation.clients.clients_per_node": Probe(executors, 7),
    "orchestration.node_allocation.clients.executors_per_node": Probe(placement, 3, SLURM),
    "orchestration.node_allocation.clients.distribution_strategy": Probe(
        placement, "all-to-all", TWO_SERVERS),
    "orchestration.node_allocation.monitors.nodes": Probe(placement, 2, SLURM),
    "orchestration.job_config.time_limit": Probe(sbatch, "03:30:00", SLURM, "--time=03:30:00"),
    "orchestration.job_config.exclusive": Probe(sbatch, True, SLURM, "--exclusive"),
    "orchestration.job_config.constraint": Probe(sbatch, "h100", SLURM, "--constraint=h100"),
    "orchestration.job_config.reservation": Probe(sbatch, "res7", SLURM, "--reservation=res7"),
    "orchestration.job_config.sbatch_options": Probe(sbatch, ["--mail-type=END"], SLURM,
                                                     "--mail-type=END"),
    "resources.servers.gpus": Probe(sbatch, 6, SLURM, "--gpus-per-node=6"),
    "resources.servers.cpus_per_task": Probe(steps, 11, SLURM, "--cpus-per-task=11"),
    "resources.servers.mem_gb": Probe(steps, 33, SLURM, "--mem=33G"),
    "resources.clients.gpus": Probe(sbatch, 7, SLURM, "--gpus-per-node=7"),
    "resources.clients.cpus_per_task": Probe(steps, 12, SLURM, "--cpus-per-task=12"),
    "resources.clients.mem_gb": Probe(steps, 1.5, SLURM, "--mem=1536M"),
    "resources.monitors.gpus": Probe(sbatch, 8, SLURM, "--gpus-per-node=8"),
    "resources.monitors.cpus_per_task": Probe(steps, 13, SLURM, "--cpus-per-task=13"),
    "resources.monitors.mem_gb": Probe(steps, 34, SLURM, "--mem=34G"),
    "workload.service": Probe(launch, "dummy", shows="--mode"),
    "workload.model": Probe(launch, "other-model", shows="other-model"),
    "workload.api": Probe(executors, "ollama-chat", shows="ollama-chat"),
    "workload.stream": Probe(executors, False),
    "workload.duration": Probe(executors, 17),
    "workload.warmup": Probe(executors, 3),
    "workload.max_requests": Probe(executors, 1234, shows="1234"),
    "workload.request_timeout": Probe(executors, 19),
    "workload.clients_per_node": Probe(executors, 9),
    "workload.concurrency": Probe(executors, 21),
    "workload.prompt_len": Probe(executors, 333, shows="333"),
    "workload.output_len": Probe(executors, 44, shows="44"),
    "workload.batch": Probe(executors, 4, with_(LOCAL, ("workload.api", "openai-completions"))),
    "workload.max_tokens": Probe(executors, 55, shows="55"),
    "workload.load.pattern": Probe(executors, "poisson",
                                   with_(LOCAL, ("workload.load", {"pattern": "constant",
                                                                   "rate": 5})), "poisson"),
    "workload.load.rate": Probe(executors, 7.5,
                                with_(LOCAL, ("workload.load", {"pattern": "poisson", "rate": 5}))),
    "workload.load.burstiness": Probe(executors, 0.25, with_(LOCAL, ("workload.load", {
        "pattern": "gamma", "rate": 5}))),
    "workload.load.burst_size": Probe(executors, 6, with_(LOCAL, ("workload.load", {
        "pattern": "burst", "burst_size": 4, "burst_pause": 1}))),
    "workload.load.burst_pause": Probe(executors, "2.5s", with_(LOCAL, ("workload.load", {
        "pattern": "burst", "burst_size": 4, "burst_pause": 1}))),
    "workload.load.trace": Probe(executors, "b.jsonl", with_(LOCAL, ("workload.load", {
        "pattern": "trace", "trace": "a.jsonl"})), "b.jsonl"),
    "workload.load.ramp_up": Probe(executors, "4s"),
    "workload.dataset.kind": Probe(executors, "bundled", shows="bundled"),
    "workload.dataset.path": Probe(executors, "b.jsonl", with_(LOCAL, ("workload.dataset", {
        "kind": "jsonl", "path": "a.jsonl"})), "b.jsonl"),
    **{f"workload.dataset.{side}.{key}": Probe(executors, value, with_(LOCAL, (
        f"workload.dataset.{side}", NORMAL)))
       for side in ("input_tokens", "output_tokens")
       for key, value in (("distribution", "uniform"), ("mean", 150), ("stddev", 25),
                          ("min", 20), ("max", 400))},
    "workload.dataset.ignore_eos": Probe(executors, False),
    "workload.dataset.seed": Probe(executors, 777, shows="777"),
    **{f"workload.dataset.shared_prefix.{key}": Probe(executors, value, with_(LOCAL, (
        "workload.dataset.shared_prefix", {"tokens": 8, "count": 2})))
       for key, value in (("count", 3), ("tokens", 64), ("fractions", [0.5, 0.1]))},
    "workload.conversation.turns": Probe(executors, 7, with_(LOCAL, ("workload.conversation",
                                                                     {"turns": 3}))),
    "workload.conversation.max_turns": Probe(executors, 5, with_(LOCAL, (
        "workload.conversation", {}))),
    "workload.conversation.think_time": Probe(executors, "3s", with_(LOCAL, (
        "workload.conversation", {}))),
    "workload.slo.ttft": Probe(goodput, "40ms"),
    "workload.slo.itl": Probe(goodput, "3ms"),
    "workload.slo.tpot": Probe(goodput, "3ms"),
    "workload.slo.e2e": Probe(goodput, "70ms"),
    "workload.error_threshold": Probe(verdict, 0.1),
    "search.axis": Probe(capacity_search, "load.rate", SEARCHING, "load.rate"),
    "search.low": Probe(capacity_search, 3, SEARCHING, "capacity_concurrency-3"),
    "search.high": Probe(capacity_search, 4, SEARCHING, "above-range"),
    "search.resolution": Probe(capacity_search, 3, SEARCHING),
    **{f"search.slo.{metric}.{key}": Probe(capacity_search, value, SEARCH_ALL)
       for metric in ("ttft", "itl", "tpot", "e2e")
       for key, value in (("percentile", 90), ("max", "85ms"))},
    "search.max_error_rate": Probe(capacity_search, 0.01, SEARCHING, "below-range"),
    "search.confidence": Probe(capacity_search, 0.6, SEARCHING),
    "search.max_repeats": Probe(capacity_search, 0, SEARCHING),
    "servers.health_check.enabled": Probe(health, False, FAILING),
    "servers.health_check.timeout": Probe(health, 0, FAILING, "after 0s"),
    "servers.health_check.interval": Probe(health, 0.03, FAILING, "0.03s apart"),
    "servers.health_check.endpoint": Probe(health, "/ready", with_(LOCAL, (
        "servers.health_check.timeout", 0.1)), "/ready"),
    "servers.health_check.retries": Probe(health, 3, FAILING, "after 3 check(s)"),
    "servers.service_config.port": Probe(launch, 9321, shows="9321"),
    "servers.service_config.gpu_layers": Probe(launch, 33, LLAMA, "--n_gpu_layers 33"),
    "servers.service_config.max_model_len": Probe(launch, 4321, VLLM, "--max-model-len 4321"),
    "servers.service_config.gpu_memory_utilization": Probe(launch, 0.55, VLLM, "0.55"),
    "servers.service_config.enforce_eager": Probe(launch, True, VLLM, "--enforce-eager"),
    "servers.service_config.enable_prefix_caching": Probe(launch, False, VLLM,
                                                          "--no-enable-prefix-caching"),
    "servers.service_config.trust_remote_code": Probe(launch, True, VLLM, "--trust-remote-code"),
    "servers.service_config.model_path": Probe(launch, "/weights/llama", VLLM, "/weights/llama"),
    "servers.service_config.env": Probe(launch, {"HF_HOME": "/hf"}, shows="HF_HOME=/hf"),
    "servers.service_config.tensor_parallel_size": Probe(launch, 2, VLLM,
                                                         "--tensor-parallel-size 2"),
    "servers.service_config.pipeline_parallel_size": Probe(launch, 2, VLLM,
                                                           "--pipeline-parallel-size 2"),
    "servers.service_config.distributed.enabled": Probe(launch, True, VLLM, "ray_cluster"),
    "servers.service_config.distributed.tensor_parallel_size": Probe(
        launch, 2, VLLM, "--tensor-parallel-size 2"),
    "servers.service_config.distributed.pipeline_parallel_size": Probe(
        launch, 2, VLLM, "--pipeline-parallel-size 2"),
    "servers.service_config.distributed.ray.port": Probe(launch, 6390, RAY, "6390"),
    "servers.service_config.distributed.ray.dashboard_port": Probe(launch, 8270, RAY, "8270"),
    "servers.service_config.distributed.ray.object_manager_port": Probe(launch, 8079, RAY,
                                                                        "8079"),
    "servers.service_config.distributed.ray.node_manager_port": Probe(launch, 8078, RAY, "8078"),
    **{f"servers.service_config.distributed.ray.{name}_port": Probe(launch, port, RAY, str(port))
       for port, name in enumerate(("ray_client_server", "dashboard_agent_grpc",
                                    "dashboard_agent_listen", "metrics_export",
                                    "runtime_env_agent", "min_worker", "max_worker"), 9101)},
    "servers.service_config.distributed.ray.temp_root": Probe(launch, "/scratch/r", RAY,
                                                              "/scratch/r/hbray-"),
    "servers.service_config.distributed.ray.num_cpus_per_node": Probe(launch, 3, RAY),
    "servers.service_config.distributed.ray.num_gpus_per_node": Probe(launch, 1, RAY),
    "monitoring.enabled": Probe(images, False, SLURM),
    "monitoring.interval": Probe(monitors, "7s", shows="7.0s"),
    "monitoring.prometheus.enabled": Probe(monitors, True, shows="--prometheus-port"),
    "monitoring.prometheus.port": Probe(recording, free_port(), PROMETHEUS),
    "monitoring.prometheus.monitor_port": Probe(monitors, 9555, PROMETHEUS, "9555"),
    "monitoring.prometheus.compat_names": Probe(monitors, "reference",
                                                with_(PROMETHEUS, ("monitoring.prometheus.monitor_port", 9555)),
                                                "--compat-names"),
    "monitoring.pushgateway": Probe(monitors, "http://gw:9091", shows="http://gw:9091"),
    "artifacts.containers_dir": Probe(launch, "/images", APPTAINER, "/images/vllm.sif"),
    "artifacts.pull": Probe(images, False, APPTAINER),
    "artifacts.service.path": Probe(images, "other.sif", APPTAINER, "other.sif"),
    "artifacts.service.remote": Probe(images, "docker://vllm/vllm-openai:v1", APPTAINER,
                                      "docker://vllm/vllm-openai:v1"),
    **{f"artifacts.{role}.path": Probe(images, f"{role}-x.sif", APPTAINER, f"{role}-x.sif")
       for role in ("python", "executor", "monitor")},
    **{f"artifacts.{role}.remote": Probe(images, f"docker://hpc/{role}:2", with_(
        APPTAINER, (f"artifacts.{role}.path", f"{role}.sif")), f"docker://hpc/{role}:2")
       for role in ("python", "executor", "monitor")},
    "security.curve": Probe(recording, True, shows="curve"),
    "security.bind_address": Probe(monitor_host, "0.0.0.0", shows="0.0.0.0"),
    "binds": Probe(launch, ["/data:/data:ro"], APPTAINER, "--bind /data:/data:ro"),
    "metadata.seed": Probe(executors, 4242, shows="4242"),
    "metadata.git_commit": Probe(recording, "abc123def", shows="abc123def"),
    "metadata.notes": Probe(recording, "note for later", shows="note for later"),
}

# keys whose accepted values change nothing: any other value is refused, with the fix
CHECKED = {
    "workload.component": ("benchmark", "one of inference"),
    "servers.service_config.distributed.backend": ("mpi", "one of ray"),
    "servers.service_config.model": ("other-model", "model_path"),
    # read by a plugin protocol's check_config and request(); the built-ins take none (the
    # example plugins' own tests show it reaching a request: test_plugin_examples.py)
    "workload.api_config": ({"x": 1}, "takes no configuration"),
}


def test_every_key_the_schema_accepts_has_a_consumer_or_is_only_a_check():
    keys = schema_keys()
    assert len(keys) == len(set(keys)) > 100
    unlisted = sorted(set(keys) - set(PROBES) - set(CHECKED))
    assert not unlisted, (f"recipe keys with no consumer: {unlisted}; make each one have an "
                          "effect (and add a probe here) or refuse it")
    assert not (set(PROBES) | set(CHECKED)) - set(keys), "probes of keys the schema lacks"


@pytest.mark.parametrize("key", sorted(PROBES))
def test_the_consumer_reads_the_key(key, tmp_path):
    probe = PROBES[key]
    changed = edited(probe.recipe, key, probe.value)
    assert validate(changed) == [], [str(problem) for problem in validate(changed)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = probe.consumer(probe.recipe, tmp_path / "a")
    after = probe.consumer(changed, tmp_path / "b")
    assert after != before, f"{key}: {probe.consumer.__name__} gave the same with {probe.value!r}"
    if probe.shows is not None:
        shown = json.dumps(after) if not isinstance(after, str) else after
        assert probe.shows in shown.replace('", "', " "), shown


@pytest.mark.parametrize("key", sorted(CHECKED))
def test_a_key_that_can_change_nothing_refuses_any_other_value(key):
    value, fix = CHECKED[key]
    base = {"workload.component": LOCAL, "servers.service_config.model": SLURM}.get(key, RAY)
    problems = [str(problem) for problem in validate(edited(base, key, value))]
    assert any(problem.startswith(key) and fix in problem for problem in problems), problems
    # and what it accepts is what the recipe is without it
    schema_enum = {"workload.component": ["inference"],
                   "servers.service_config.distributed.backend": ["ray"]}
    if key in schema_enum:
        accepted = schema_enum[key]
        assert len(accepted) == 1 and validate(edited(base, key, accepted[0])) == []
