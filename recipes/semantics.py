"""Recipe rules a JSON Schema cannot express: cross-field consistency and the seed's rules.

Each rule reads the raw recipe defensively (any part may be malformed; the schema check reports
that separately) and returns Problems, so a user sees every problem in one pass.
"""
from __future__ import annotations

import ipaddress
import math
from typing import Callable

from hpcbench.common.conversation_rules import conversation_problems
from hpcbench.common.errors import HpcbenchError
from hpcbench.common.limits import MAX_AGENTS, MAX_IN_FLIGHT, MAX_TRIALS
from hpcbench.executor import protocol_registry
from hpcbench.recipes.defaults import MONITOR_PROMETHEUS_PORT, PROMETHEUS_PORT
from hpcbench.recipes.problems import MISSING, Problem, lookup
from hpcbench.recipes.schema import suggest
from hpcbench.servers import registry as service_registry

OPEN_LOOP_PATTERNS = ("constant", "poisson", "gamma", "burst")
RATE_PATTERNS = ("constant", "poisson", "gamma")     # burst is paced by burst_size/burst_pause
MIN_RATE = 0.001                 # requests/s: workload.load.rate's minimum (recipe.schema.json)
# load keys and the patterns that read them (the executor's schedules; executor/config.py)
PATTERN_KEYS = {"rate": RATE_PATTERNS, "burstiness": ("gamma",),
                "burst_size": ("burst",), "burst_pause": ("burst",), "trace": ("trace",)}
SIMULATORS = ("simulator", "dummy")          # hpcbench's own server, run from its own image
SPEAK_OLLAMA = ("ollama", *SIMULATORS)


def semantic_problems(data: object) -> list[Problem]:
    if not isinstance(data, dict):
        return []
    problems: list[Problem] = []
    for rule in RULES:
        problems.extend(rule(data))
    return problems


def _int(value: object) -> int | None:
    """`value` when it is a real integer (not bool), else None: malformed values are skipped."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _service_is_known(data: dict) -> list[Problem]:
    return _installed("workload.service", lookup(data, "workload.service"),
                      service_registry.known_services(), service_registry.ENTRY_POINT_GROUP)


def _api_is_known(data: dict) -> list[Problem]:
    return _installed("workload.api", lookup(data, "workload.api"),
                      protocol_registry.known_protocols(), protocol_registry.ENTRY_POINT_GROUP)


def _installed(path: str, name: object, names: list[str], group: str) -> list[Problem]:
    """A service or protocol name that no built-in and no installed plugin provides."""
    if not isinstance(name, str) or name in names:
        return []
    return [Problem(path, name, f"one of {', '.join(names)} or a plugin registered under the "
                                f"entry-point group '{group}'{suggest(name, names)}")]


def _api_fits_service(data: dict) -> list[Problem]:
    api, service = lookup(data, "workload.api"), lookup(data, "workload.service")
    problems = []
    if isinstance(api, str) and api.startswith("ollama-") and service not in SPEAK_OLLAMA:
        problems.append(Problem("workload.api", api,
                                f"an OpenAI API (openai-chat or openai-completions): service "
                                f"'{service}' does not speak the Ollama API"))
    batch = lookup(data, "workload.batch")
    batches = batch if isinstance(batch, list) else [batch]
    api = _resolved_api(data)
    if any(_int(size) and size > 1 for size in batches) and not _batches(api):
        able = [name for name in protocol_registry.known_protocols() if _batches(name)]
        problems.append(Problem("workload.batch", batch,
                                f"1 unless workload.api is {' or '.join(able)} (only they take "
                                "several prompts per request)"))
    return problems


def _resolved_api(data: dict) -> object:
    """workload.api, else the service's own api (the default defaults.py applies); whatever
    it is when neither is known (reported by _api_is_known and _service_is_known)."""
    api, service = lookup(data, "workload.api"), lookup(data, "workload.service")
    if not isinstance(api, str) and service in service_registry.known_services():
        try:
            return service_registry.get_service(service).api
        except HpcbenchError:
            return api
    return api


def _protocol(api: object):
    """The installed protocol called `api`, or None (unknown ones are _api_is_known's)."""
    if api not in protocol_registry.known_protocols():
        return None
    try:
        return protocol_registry.get_protocol(api)
    except HpcbenchError:
        return None


def _api_takes_its_config(data: dict) -> list[Problem]:
    """workload.api_config and workload.stream as the protocol itself accepts them."""
    api = _resolved_api(data)
    protocol = _protocol(api)
    if protocol is None:
        return []
    problems = []
    if lookup(data, "workload.stream") is True and not protocol.streams:
        problems.append(Problem("workload.stream", True,
                                f"false or nothing: api '{api}' answers every request whole "
                                "(it does not stream)"))
    config = lookup(data, "workload.api_config", {})
    if isinstance(config, dict):    # anything else is the schema's to report
        try:
            protocol.check_config(dict(config))
        except HpcbenchError as error:
            problems.append(Problem("workload.api_config", config,
                                    f"a configuration api '{api}' accepts: " +
                                    "; ".join((error.message, *error.details))))
    return problems


def _batches(api: object) -> bool:
    """Whether protocol `api` sends several prompts in one request (unknown ones are reported
    by _api_is_known)."""
    if api not in protocol_registry.known_protocols():
        return True
    try:
        return protocol_registry.get_protocol(api).batches
    except HpcbenchError:
        return True


def _load_has_its_parameters(data: dict) -> list[Problem]:
    load = lookup(data, "workload.load")
    if not isinstance(load, dict):
        return []
    pattern = load.get("pattern", "closed")
    problems = []
    searched = lookup(data, "search.axis") == "load.rate"   # the search sets each rate
    if pattern in RATE_PATTERNS and load.get("rate") is None and not searched:
        problems.append(Problem("workload.load.rate", load.get("rate", MISSING),
                                f"a request rate in requests/s: load pattern '{pattern}' is open "
                                f"loop and needs one"))
    if pattern == "burst":
        for key, what in (("burst_size", "requests per burst"), ("burst_pause", "a pause such as \"2s\"")):
            if load.get(key) is None:
                problems.append(Problem(f"workload.load.{key}", load.get(key, MISSING),
                                        f"{what}: load pattern 'burst' needs it"))
    if pattern == "trace" and not load.get("trace"):
        problems.append(Problem("workload.load.trace", load.get("trace", MISSING),
                                "a JSONL file with one {\"timestamp\": seconds} per line: load "
                                "pattern 'trace' replays it"))
    if pattern == "closed" and load.get("rate") is not None:
        problems.append(Problem("workload.load.rate", load.get("rate"),
                                "no rate with pattern 'closed' (closed loop is paced by "
                                "concurrency); set pattern: constant or poisson to use a rate"))
    if isinstance(pattern, str) and pattern in ("closed", *RATE_PATTERNS, "burst", "trace"):
        # burstiness 1 is Poisson: the value every pattern but gamma stands for
        unused = [key for key, patterns in PATTERN_KEYS.items()
                  if pattern not in patterns and load.get(key) is not None
                  and not (key == "burstiness" and load[key] == 1)
                  and not (key == "rate" and pattern == "closed")]   # said above
        problems += [Problem(f"workload.load.{key}", load[key],
                             f"no {key} with pattern '{pattern}' (only "
                             f"{' and '.join(PATTERN_KEYS[key])} use{'s' if len(PATTERN_KEYS[key]) == 1 else ''} it)")
                     for key in unused]
    return problems


def _dataset_is_complete(data: dict) -> list[Problem]:
    dataset = lookup(data, "workload.dataset")
    if not isinstance(dataset, dict):
        return []
    problems = []
    if dataset.get("kind") in ("sharegpt", "jsonl") and not dataset.get("path"):
        problems.append(Problem("workload.dataset.path", dataset.get("path", MISSING),
                                f"the path of the {dataset['kind']} file to read prompts from"))
    for side in ("input_tokens", "output_tokens"):
        problems += _distribution_problems(f"workload.dataset.{side}", dataset.get(side))
    return problems + _shared_prefix_fits(dataset)


def _shared_prefix_fits(dataset: dict) -> list[Problem]:
    """shared_prefix: synthetic prompts only; one fraction per prefix, adding up to <= 1."""
    shared = dataset.get("shared_prefix")
    if not isinstance(shared, dict):
        return []
    kind = dataset.get("kind", "synthetic")
    if kind != "synthetic":
        return [Problem("workload.dataset.shared_prefix", shared,
                        f"no shared_prefix with kind '{kind}': shared prefixes are generated "
                        "for synthetic prompts (set kind: synthetic, or remove shared_prefix)")]
    fractions, count = shared.get("fractions"), shared.get("count")
    if not isinstance(fractions, list):
        if count is None:
            return [Problem("workload.dataset.shared_prefix.count", MISSING,
                            "how many shared prefixes (or a fractions list, one per prefix)")]
        return []
    problems = []
    if isinstance(count, int) and count != len(fractions):
        problems.append(Problem("workload.dataset.shared_prefix.fractions", fractions,
                                f"one fraction per prefix: {count} (count), or drop count"))
    numbers = [f for f in fractions if isinstance(f, (int, float)) and not isinstance(f, bool)]
    if len(numbers) == len(fractions) and sum(numbers) > 1 + 1e-9:
        problems.append(Problem("workload.dataset.shared_prefix.fractions", fractions,
                                f"fractions adding up to at most 1 (they add up to "
                                f"{sum(numbers):g}; the rest of the prompts get no prefix)"))
    return problems


def _distribution_problems(path: str, lengths: object) -> list[Problem]:
    """A length distribution (tokens, turns) that lacks what its kind needs, or min > max."""
    if not isinstance(lengths, dict):
        return []
    needs = {"fixed": ("mean",), "uniform": ("min", "max"), "normal": ("mean", "stddev")}
    problems = []
    distribution = lengths.get("distribution", "fixed")
    # an unhashable distribution (a list, a map) is the schema's problem to report
    for key in needs.get(distribution, ()) if isinstance(distribution, str) else ():
        if key not in lengths:
            problems.append(Problem(f"{path}.{key}", MISSING,
                                    f"a value: distribution '{distribution}' needs "
                                    f"{' and '.join(needs[distribution])}"))
    low, high = _int(lengths.get("min")), _int(lengths.get("max"))
    if low is not None and high is not None and low > high:
        problems.append(Problem(f"{path}.max", high, f"a value >= min ({low})"))
    return problems


def _conversation_fits(data: dict) -> list[Problem]:
    """workload.conversation against the dataset, the api and the batch (the executor's own
    rules, executor/config.py), and its turn-count distribution's completeness."""
    conversation = lookup(data, "workload.conversation")
    if not isinstance(conversation, dict):
        return []
    batch = lookup(data, "workload.batch")
    sizes = [size for size in (batch if isinstance(batch, list) else [batch]) if _int(size)]
    problems = [Problem(*problem) for problem in conversation_problems(
        conversation, lookup(data, "workload.dataset.kind", "synthetic"),
        _protocol(_resolved_api(data)), max(sizes, default=None))]
    return problems + _distribution_problems("workload.conversation.turns",
                                             conversation.get("turns"))


def _slurm_has_account(data: dict) -> list[Problem]:
    if lookup(data, "orchestration.mode") != "slurm":
        return []
    return [Problem(key, MISSING, f"a Slurm {key}: orchestration.mode is slurm (local recipes "
                                  f"need none)")
            for key in ("partition", "account") if key not in data]


def _gpus_need_gpu_partition(data: dict) -> list[Problem]:
    partition = data.get("partition")
    if lookup(data, "orchestration.mode") != "slurm" or not isinstance(partition, str):
        return []
    for role in ("servers", "clients", "monitors"):
        gpus = _int(lookup(data, f"resources.{role}.gpus"))
        if gpus and "gpu" not in partition.lower():
            return [Problem("partition", partition,
                            f"a GPU partition (its name contains 'gpu') because "
                            f"resources.{role}.gpus is {gpus}; or set gpus to 0")]
    return []


def _parallelism_fits_gpus(data: dict) -> list[Problem]:
    config = lookup(data, "servers.service_config")
    if not isinstance(config, dict):
        return []
    distributed = config.get("distributed") if isinstance(config.get("distributed"), dict) else {}
    where_set = "distributed." if "tensor_parallel_size" in distributed else ""
    tensor = _int(distributed.get("tensor_parallel_size", config.get("tensor_parallel_size"))) or 1
    pipeline = _int(distributed.get("pipeline_parallel_size",
                                    config.get("pipeline_parallel_size"))) or 1
    if tensor * pipeline == 1:
        return []
    gpus_per_node = _int(lookup(data, "resources.servers.gpus", 0)) or 0
    nodes = _int(lookup(data, "orchestration.node_allocation.servers.nodes", 1))
    nodes = nodes if nodes is not None else 1
    multi_node = distributed.get("enabled") is True
    available = gpus_per_node * (nodes if multi_node else 1)
    if tensor * pipeline <= available:
        return []
    where = (f"{gpus_per_node} GPU(s) per server node x {nodes} server node(s)" if multi_node
             else f"{gpus_per_node} GPU(s) on the one server node (distributed.enabled is not true)")
    return [Problem(f"servers.service_config.{where_set}tensor_parallel_size", tensor,
                    f"tensor_parallel_size x pipeline_parallel_size ({tensor} x {pipeline}) <= "
                    f"GPUs available to servers: {where} = {available}")]


def _distributed_is_vllm_on_servers(data: dict) -> list[Problem]:
    if lookup(data, "servers.service_config.distributed.enabled") is not True:
        return []
    problems = []
    service = lookup(data, "workload.service")
    if isinstance(service, str) and service != "vllm":
        problems.append(Problem("servers.service_config.distributed.enabled", True,
                                f"false: distributed serving with Ray is built for vllm, not "
                                f"'{service}'"))
    if data.get("endpoints"):
        problems.append(Problem("endpoints", data["endpoints"],
                                "no endpoints when servers.service_config.distributed is "
                                "enabled (hpcbench deploys that service itself)"))
    return problems


def _ray_settings_need_ray(data: dict) -> list[Problem]:
    """distributed.backend and distributed.ray configure the Ray cluster, which only
    `distributed.enabled: true` starts (the parallel sizes apply either way)."""
    distributed = lookup(data, "servers.service_config.distributed")
    if not isinstance(distributed, dict) or distributed.get("enabled") is True:
        return []
    return [Problem(f"servers.service_config.distributed.{key}", distributed[key],
                    "no Ray setting unless distributed.enabled is true (set enabled: true to "
                    "serve over a Ray cluster, or remove it)")
            for key in ("backend", "ray") if key in distributed]


def _node_counts_fit(data: dict) -> list[Problem]:
    total = _int(lookup(data, "orchestration.total_nodes"))
    if total is None:
        return []
    counts = {role: _int(lookup(data, f"orchestration.node_allocation.{role}.nodes"))
              for role in ("servers", "clients", "monitors")}
    problems = [Problem(f"orchestration.node_allocation.{role}.nodes", count,
                        f"at most orchestration.total_nodes ({total})")
                for role, count in counts.items() if count is not None and count > total]
    if problems or lookup(data, "orchestration.mode") != "slurm":
        return problems  # locally every role shares the one machine
    used = sum(count or 0 for count in counts.values())
    if used > total:
        problems.append(Problem("orchestration.total_nodes", total,
                                f"at least servers + clients + monitors nodes = {used}, or fewer "
                                f"nodes per role"))
    return problems


def _agents_fit(data: dict) -> list[Problem]:
    """Executors (client nodes x executors per node) and monitors (one per node) a coordinator
    can serve: each holds a control stream for the whole session."""
    allocation = "orchestration.node_allocation"
    per_node = _int(lookup(data, f"{allocation}.clients.executors_per_node")) or 1
    clients = _int(lookup(data, f"{allocation}.clients.nodes")) or 1
    nodes = _int(lookup(data, "orchestration.total_nodes")) or clients
    agents = clients * per_node + nodes
    if agents <= MAX_AGENTS:
        return []
    return [Problem(f"{allocation}.clients.executors_per_node", per_node,
                    f"at most {MAX_AGENTS} executors and monitors on one coordinator (this plan "
                    f"has {clients * per_node} executors and {nodes} monitors): fewer executors "
                    "per node, or split the benchmark into several jobs")]


def _plugin(data: dict):
    """The recipe's service plugin, or None when it is unknown (reported by _service_is_known)
    or cannot be loaded."""
    service = lookup(data, "workload.service")
    if not isinstance(service, str) or service not in service_registry.known_services():
        return None
    try:
        return service_registry.get_service(service)
    except HpcbenchError:
        return None


def _service_config_keys_known(data: dict) -> list[Problem]:
    """A service that declares its service_config keys (the simulator: every other key would
    be a flag `hpcbench sim` exits on) refuses the others here when hpcbench launches it, not
    when the server starts; every service refuses the documented keys it has no use for
    (`refused_keys`)."""
    config, plugin = lookup(data, "servers.service_config"), _plugin(data)
    if not isinstance(config, dict) or plugin is None:
        return []
    refused = [Problem(f"servers.service_config.{key}", config[key], fix)
               for key, fix in plugin.refused_keys.items() if key in config]
    if plugin.config_keys is None or data.get("endpoints"):
        return refused        # endpoints: nothing is launched; prepare() gets every key
    allowed = sorted(plugin.config_keys)
    return [Problem(f"servers.service_config.{key}", value,
                    f"a key the {plugin.name} service takes{suggest(str(key), allowed)}: "
                    f"{', '.join(allowed)}")
            for key, value in config.items() if key not in plugin.config_keys] + refused


def _service_takes_its_config(data: dict) -> list[Problem]:
    """servers.service_config's values as the service plugin itself judges them
    (`config_problems`); a plugin whose check crashes is named, never a traceback."""
    config, plugin = lookup(data, "servers.service_config"), _plugin(data)
    if not isinstance(config, dict) or plugin is None:
        return []
    try:
        return [Problem(f"servers.service_config.{key}", value, expected)
                for key, value, expected in plugin.config_problems(dict(config))]
    except Exception as error:      # noqa: BLE001 - a third party's bug, reported as such
        return [Problem("servers.service_config", config,
                        f"the {plugin.name} plugin's config_problems failed "
                        f"({type(error).__name__}: {error}); report it to the plugin's authors "
                        "or remove the keys it trips on")]


def _service_config_model_is_the_workloads(data: dict) -> list[Problem]:
    """service_config.model (the reference's recipes repeat the model there) must be the
    model the clients request: hpcbench loads and asks for workload.model."""
    model = lookup(data, "servers.service_config.model", MISSING)
    wanted = lookup(data, "workload.model")
    if model is MISSING or model == wanted:
        return []
    return [Problem("servers.service_config.model", model,
                    f"workload.model ({wanted!r}) or no key: the server loads and the clients "
                    f"request workload.model; put weights to load under another name in "
                    f"servers.service_config.model_path")]


def _health_endpoint_is_http(data: dict) -> list[Problem]:
    endpoint, plugin = lookup(data, "servers.health_check.endpoint", MISSING), _plugin(data)
    if endpoint is MISSING or plugin is None or plugin.health_paths is not None:
        return []
    return [Problem("servers.health_check.endpoint", endpoint,
                    f"no endpoint: the {plugin.name} service's health check is not an HTTP "
                    f"GET (it checks its health its own way)")]


def _llamacpp_has_model_file(data: dict) -> list[Problem]:
    if lookup(data, "workload.service") != "llamacpp" or data.get("endpoints"):
        return []
    if lookup(data, "servers.service_config.model_path"):
        return []
    return [Problem("servers.service_config.model_path", MISSING,
                    "the GGUF model file llama.cpp serves (workload.model is only the name "
                    "clients send)")]


def _something_to_benchmark(data: dict) -> list[Problem]:
    if data.get("endpoints") or lookup(data, "orchestration.node_allocation.servers.nodes") != 0:
        return []
    return [Problem("orchestration.node_allocation.servers.nodes", 0,
                    "1 or more server nodes, or endpoints: [url, ...] of a running service "
                    "(otherwise there is nothing to benchmark)")]


def _container_has_image(data: dict) -> list[Problem]:
    default = "apptainer" if lookup(data, "orchestration.mode") == "slurm" else "process"
    runtime = data.get("runtime", default)
    if runtime not in ("apptainer", "podman") or data.get("endpoints"):
        return []
    if lookup(data, "workload.service") in SIMULATORS or lookup(data, "artifacts.service.path"):
        return []
    image = "the service's .sif image" if runtime == "apptainer" else \
        "the service's image (a name podman has, or an OCI archive .tar)"
    return [Problem("artifacts.service.path", MISSING,
                    f"{image}: runtime {runtime} deploys the service from it "
                    "(or use runtime: process, or endpoints: [...] for a running service)")]


def _remote_has_a_path(data: dict) -> list[Problem]:
    """An image `remote` is pulled into the artifact's `path`: without one it would do nothing."""
    artifacts = data.get("artifacts")
    if not isinstance(artifacts, dict):
        return []
    return [Problem(f"artifacts.{role}.path", MISSING,
                    f"the .sif file that {entry['remote']} is pulled into (a remote alone "
                    f"names no image file)")
            for role, entry in artifacts.items()
            if isinstance(entry, dict) and entry.get("remote") and not entry.get("path")]


def _prometheus_ports_differ(data: dict) -> list[Problem]:
    """The coordinator shares a node with a monitor (locally, and often on a cluster): one port
    cannot serve both endpoints."""
    if lookup(data, "monitoring.prometheus.enabled") is not True:
        return []
    port = lookup(data, "monitoring.prometheus.port", PROMETHEUS_PORT)
    monitor_port = lookup(data, "monitoring.prometheus.monitor_port", MONITOR_PROMETHEUS_PORT)
    if _int(port) is None or port != _int(monitor_port):
        return []
    return [Problem("monitoring.prometheus.monitor_port", monitor_port,
                    f"a port other than monitoring.prometheus.port ({port}), or 0 for no "
                    f"monitor endpoint: the coordinator serves its metrics there")]


def _compat_names_are_exposed(data: dict) -> list[Problem]:
    """The reference's names are extra Prometheus series: something must expose them, the
    session's endpoints or the monitors' Pushgateway pushes."""
    compat = lookup(data, "monitoring.prometheus.compat_names")
    if compat in (None, "none") or not isinstance(compat, str):
        return []
    if lookup(data, "monitoring.prometheus.enabled") is True:
        return []
    if lookup(data, "monitoring.pushgateway") and lookup(data, "monitoring.enabled") is not False:
        return []
    return [Problem("monitoring.prometheus.compat_names", compat,
                    "none while nothing is exposed to Prometheus: set monitoring.prometheus."
                    "enabled: true (the session's endpoints) or monitoring.pushgateway (the "
                    "monitors' pushes) for the reference's names to appear")]


def _bind_address_is_an_ip(data: dict) -> list[Problem]:
    address = lookup(data, "security.bind_address")
    if not isinstance(address, str):
        return []
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return [Problem("security.bind_address", address,
                        "an IPv4 address literal such as 0.0.0.0 (every interface), 127.0.0.1 "
                        "or 10.1.2.3 (a host name may resolve to several)")]
    return []


def _sweep_fits(data: dict) -> list[Problem]:
    """A sweep is expanded into a list of trials up front: bound that list (each trial also
    becomes a directory and a run of its own: 10,000 of them at a minute each is a week)."""
    from hpcbench.recipes.sweep import SWEEP_AXES  # sweep imports the loader, which imports us

    workload = data.get("workload")
    repetitions = _int(data.get("repetitions"))
    if not isinstance(workload, dict) or (repetitions is not None and repetitions < 1):
        return []
    sizes = {}
    for axis in SWEEP_AXES:
        value = lookup(workload, axis)
        if isinstance(value, list) and value:
            sizes[axis] = len(value)
    trials = math.prod(sizes.values()) * (repetitions or 1)
    if trials <= MAX_TRIALS:
        return []
    factors = " x ".join(f"{count} {axis}" for axis, count in sorted(sizes.items()))
    if repetitions and repetitions > 1:
        factors += f" x {repetitions} repetitions"
    path = "repetitions" if not sizes else f"workload.{max(sizes, key=sizes.get)}"
    value = repetitions if not sizes else lookup(workload, path.split(".", 1)[1])
    return [Problem(path, value, f"a sweep of at most {MAX_TRIALS:,} trials; this one has "
                                 f"{trials:,} ({factors}): sweep fewer values or split it into "
                                 "several recipes")]


def _search_fits(data: dict) -> list[Problem]:
    """A capacity search (search.*): a range it can bisect, loads its axis can take, a load
    pattern that axis drives, something to meet, and no fixed sweep beside it."""
    from hpcbench.recipes.sweep import SWEEP_AXES  # sweep imports the loader, which imports us

    search = data.get("search")
    if not isinstance(search, dict):
        return []
    problems = []
    axis, low, high = search.get("axis"), search.get("low"), search.get("high")
    resolution = search.get("resolution")
    numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool)
                  for value in (low, high, resolution))
    if numbers and high <= low:
        problems.append(Problem("search.high", high, f"a load above search.low ({low:g}): "
                                                     "the search probes loads between the two"))
    elif numbers and resolution >= high - low:
        problems.append(Problem("search.resolution", resolution,
                                f"a step below high - low ({high - low:g}): with a coarser "
                                "one there is nothing to search; lower it or widen the range"))
    if axis == "concurrency":
        for key in ("low", "high", "resolution"):
            value = search.get(key)
            if isinstance(value, float) and not value.is_integer():
                problems.append(Problem(f"search.{key}", value, "a whole number: concurrency "
                                        "counts requests in flight"))
        if isinstance(high, (int, float)) and high > MAX_IN_FLIGHT:
            problems.append(Problem("search.high", high, f"at most {MAX_IN_FLIGHT:,} requests "
                                    "in flight (concurrency)"))
    if axis == "load.rate" and isinstance(low, (int, float)) and 0 < low < MIN_RATE:
        problems.append(Problem("search.low", low, f"at least {MIN_RATE:g} requests/s (the "
                                "lowest rate workload.load.rate takes)"))
    pattern = lookup(data, "workload.load.pattern")   # absent: what the axis drives
    wanted = {"load.rate": RATE_PATTERNS, "concurrency": ("closed",)}.get(
        axis if isinstance(axis, str) else "")
    if wanted and pattern is not None and pattern not in wanted:
        problems.append(Problem("workload.load.pattern", pattern,
                                f"{' or '.join(wanted)}: search.axis {axis} drives "
                                f"{'an open-loop rate' if axis == 'load.rate' else 'closed-loop concurrency'}"))
    if not search.get("slo") and "max_error_rate" not in search:
        problems.append(Problem("search.slo", search.get("slo", MISSING),
                                "at least one of ttft, itl, tpot, e2e as {percentile, max} (or "
                                "search.max_error_rate alone, to search on errors only)"))
    workload = data.get("workload") if isinstance(data.get("workload"), dict) else {}
    for swept in SWEEP_AXES:
        if isinstance(lookup(workload, swept), list):
            problems.append(Problem(f"workload.{swept}", lookup(workload, swept),
                                    "a single value: a capacity search varies search.axis "
                                    "itself; run a sweep or a search, not both in one recipe"))
    repetitions = _int(data.get("repetitions"))
    if repetitions is not None and repetitions > 1:
        problems.append(Problem("repetitions", repetitions,
                                "1 with a capacity search (a load whose verdict is close runs "
                                "again by itself: search.max_repeats)"))
    return problems


RULES: tuple[Callable[[dict], list[Problem]], ...] = (
    _service_is_known, _api_is_known, _api_fits_service, _api_takes_its_config, _agents_fit,
    _load_has_its_parameters, _dataset_is_complete, _conversation_fits,
    _slurm_has_account, _gpus_need_gpu_partition, _parallelism_fits_gpus,
    _distributed_is_vllm_on_servers, _ray_settings_need_ray, _node_counts_fit, _llamacpp_has_model_file,
    _something_to_benchmark, _service_config_keys_known, _service_takes_its_config,
    _service_config_model_is_the_workloads,
    _health_endpoint_is_http,
    _container_has_image, _remote_has_a_path, _prometheus_ports_differ, _compat_names_are_exposed,
    _bind_address_is_an_ip, _sweep_fits, _search_fits,
)
