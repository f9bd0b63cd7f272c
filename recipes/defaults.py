"""Defaults that turn a valid recipe into the resolved recipe every component reads.

After `resolve(data)` every field a component needs is present, durations are float seconds and
the API defaults to the one the service's plugin speaks, so no component re-implements a
default. Sweep axes stay as written (scalars or lists); `sweep.expand_trials` resolves those.
"""
from __future__ import annotations

import copy

from hpcbench.common.durations import parse_duration

PROMETHEUS_PORT = 9400           # the coordinator's endpoint (monitoring.prometheus.port)
MONITOR_PROMETHEUS_PORT = 9401   # each monitor's endpoint (monitoring.prometheus.monitor_port)
# Dotted paths of every duration field; they are converted to float seconds.
DURATION_FIELDS = (
    "workload.duration", "workload.warmup", "workload.request_timeout",
    "workload.load.burst_pause", "workload.load.ramp_up",
    "workload.slo.ttft", "workload.slo.itl", "workload.slo.tpot", "workload.slo.e2e",
    "servers.health_check.timeout", "servers.health_check.interval",
    "monitoring.interval",
    "search.slo.ttft.max", "search.slo.itl.max", "search.slo.tpot.max", "search.slo.e2e.max",
)
SEARCH_CONFIDENCE = 0.95   # of the interval around a measured percentile (search.confidence)
SEARCH_MAX_REPEATS = 2     # more runs of a bracket end whose verdict is close (max_repeats)


def resolve(data: dict) -> dict:
    """A deep copy of a *valid* recipe with every default applied and durations in seconds."""
    recipe = copy.deepcopy(data)
    workload = recipe["workload"]
    mode = recipe.setdefault("orchestration", {}).setdefault("mode", "local")
    recipe.setdefault("repetitions", 1)
    recipe.setdefault("runtime", "apptainer" if mode == "slurm" else "process")
    recipe.setdefault("endpoints", [])
    recipe.setdefault("on_executor_loss", "continue")
    aggregation = recipe.setdefault("aggregation", {})
    aggregation.setdefault("mode", "auto")
    aggregation.setdefault("histograms_from", 32)
    recipe.setdefault("results_dir", "results")
    recipe.setdefault("modules", [])
    recipe.setdefault("binds", [])
    recipe.setdefault("metadata", {})

    orchestration = recipe["orchestration"]
    allocation = orchestration.setdefault("node_allocation", {})
    allocation.setdefault("servers", {}).setdefault("nodes", 0 if recipe["endpoints"] else 1)
    clients = allocation.setdefault("clients", {})
    clients.setdefault("nodes", 1)
    clients.setdefault("executors_per_node", 1)
    clients.setdefault("distribution_strategy", "round-robin")
    allocation.setdefault("monitors", {}).setdefault("nodes", 0)
    orchestration.setdefault("total_nodes", _nodes_needed(allocation, mode))
    orchestration.setdefault("job_config", {})
    recipe.setdefault("resources", {})

    workload.setdefault("component", "inference")
    if "api" not in workload:
        from hpcbench.servers.registry import get_service  # plugins load only when needed
        workload["api"] = get_service(workload["service"]).api
    if "stream" not in workload:     # streamed answers wherever the protocol streams
        from hpcbench.executor.protocol_registry import get_protocol
        workload["stream"] = get_protocol(workload["api"]).streams
    workload.setdefault("api_config", {})
    workload.setdefault("duration", 60)
    workload.setdefault("warmup", 0)
    workload.setdefault("max_requests", None)
    workload.setdefault("request_timeout", 60)
    workload.setdefault("clients_per_node", clients.get("clients_per_node", 1))
    clients.setdefault("clients_per_node", workload["clients_per_node"])
    for axis in ("concurrency", "prompt_len", "output_len", "max_tokens"):
        workload.setdefault(axis, None)
    workload.setdefault("batch", 1)
    load = workload.setdefault("load", {})
    # a capacity search on the rate runs open loop: Poisson arrivals unless the recipe says
    searches_rate = (recipe.get("search") or {}).get("axis") == "load.rate"
    load.setdefault("pattern", "poisson" if searches_rate else "closed")
    load.setdefault("rate", None)
    load.setdefault("burstiness", 1.0)
    load.setdefault("burst_size", None)
    load.setdefault("burst_pause", None)
    load.setdefault("trace", None)
    load.setdefault("ramp_up", 0)
    dataset = workload.setdefault("dataset", {})
    dataset.setdefault("kind", "synthetic")
    dataset.setdefault("path", None)
    dataset.setdefault("input_tokens", {"distribution": "fixed", "mean": 128})
    dataset.setdefault("output_tokens", {"distribution": "fixed", "mean": 16})
    for tokens in (dataset["input_tokens"], dataset["output_tokens"]):
        tokens.setdefault("distribution", "fixed")
    dataset.setdefault("ignore_eos", True)
    dataset.setdefault("seed", recipe["metadata"].get("seed", 42))
    workload.setdefault("slo", {})
    workload.setdefault("error_threshold", 0.01)
    if "search" in recipe:            # a capacity search (absent: a fixed sweep)
        search = recipe["search"]
        search.setdefault("slo", {})
        search.setdefault("max_error_rate", workload["error_threshold"])
        search.setdefault("confidence", SEARCH_CONFIDENCE)
        search.setdefault("max_repeats", SEARCH_MAX_REPEATS)

    servers = recipe.setdefault("servers", {})
    health = servers.setdefault("health_check", {})
    health.setdefault("enabled", True)
    health.setdefault("timeout", 300)
    health.setdefault("interval", 0.1)      # a run starts as soon as the server answers
    health.setdefault("retries", None)      # None: check until the timeout
    servers.setdefault("service_config", {})

    monitoring = recipe.setdefault("monitoring", {})
    monitoring.setdefault("enabled", True)
    monitoring.setdefault("interval", 1)
    monitoring.setdefault("prometheus", {}).setdefault("enabled", False)
    monitoring["prometheus"].setdefault("port", PROMETHEUS_PORT)
    monitoring["prometheus"].setdefault("monitor_port", MONITOR_PROMETHEUS_PORT)
    monitoring["prometheus"].setdefault("compat_names", "none")   # hpcbench's names only
    monitoring.setdefault("pushgateway", None)

    recipe.setdefault("security", {}).setdefault("curve", None)   # automatic
    recipe["security"].setdefault("bind_address", None)
    recipe.setdefault("artifacts", {}).setdefault("pull", True)

    for path in DURATION_FIELDS:
        _convert_duration(recipe, path)
    return recipe


def _nodes_needed(allocation: dict, mode: str) -> int:
    """Locally everything shares one machine; on Slurm each role gets its own nodes."""
    if mode != "slurm":
        return 1
    return (allocation["servers"]["nodes"] + allocation["clients"]["nodes"]
            + allocation["monitors"]["nodes"])


def _convert_duration(recipe: dict, path: str) -> None:
    *parents, leaf = path.split(".")
    node = recipe
    for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    if node.get(leaf) is not None:
        node[leaf] = parse_duration(node[leaf])
