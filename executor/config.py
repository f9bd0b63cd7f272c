"""LoadConfig: what one executor does in one trial, resolved from a recipe's trial workload.

The coordinator hands every executor the same resolved workload dict plus its own index; this
module turns it into one executor's share (rate / executor_count, its part of the total
concurrency, its part of a trace) and checks every field, so a bad value fails here with an
E006 error naming the field and the fix instead of misbehaving mid-trial.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hpcbench.common import limits
from hpcbench.common.conversation_rules import conversation_problems
from hpcbench.common.durations import parse_duration
from hpcbench.common.errors import config_error
from hpcbench.executor.protocol_registry import get_protocol, known_protocols
from hpcbench.proto.samples import MAX_ROWS

PATTERNS = ("closed", "constant", "poisson", "gamma", "burst", "trace")
DATASET_KINDS = ("synthetic", "sharegpt", "jsonl", "bundled")
DISTRIBUTIONS = ("fixed", "uniform", "normal")
THINK_DISTRIBUTIONS = ("fixed", "uniform", "exponential")


@dataclass(frozen=True)
class LengthSpec:
    """A token-length distribution: fixed `mean`, uniform `min..max`, or normal clipped to it."""

    distribution: str = "fixed"
    mean: int = 128
    min: int = 1
    max: int = 1_000_000
    stddev: float = 0.0


@dataclass(frozen=True)
class SharedPrefixSpec:
    """Synthetic prompts that begin with one of `len(fractions)` shared prefixes ("system
    prompts") of `tokens` tokens: fractions[i] of the prompts start with prefix i, the rest
    with none; every prompt then has its own suffix (`input_tokens` long)."""

    tokens: int
    fractions: tuple[float, ...]


@dataclass(frozen=True)
class DatasetSpec:
    kind: str = "synthetic"
    path: str | None = None
    input_tokens: LengthSpec = LengthSpec(mean=128)
    output_tokens: LengthSpec | None = LengthSpec(mean=128)   # None: the dataset's own lengths
    ignore_eos: bool = False
    seed: int = 0
    shared_prefix: SharedPrefixSpec | None = None


@dataclass(frozen=True)
class LoadSpec:
    """This executor's share of the load (rates and burst sizes already divided)."""

    pattern: str = "closed"
    rate: float = 0.0            # requests/s of this executor (open loop)
    burstiness: float = 1.0      # gamma shape; 1 = Poisson, < 1 burstier, > 1 more regular
    burst_size: int = 1
    burst_pause: float = 1.0
    trace: str | None = None
    ramp_up: float = 0.0
    phase_offset: float = 0.0    # constant pattern: spreads executors' arrivals evenly


@dataclass(frozen=True)
class ThinkTimeSpec:
    """The pause between an answer and the user's next message: fixed `mean`, uniform
    `min..max`, or exponential with `mean` (seconds)."""

    distribution: str = "fixed"
    mean: float = 0.0
    min: float = 0.0
    max: float = 0.0


@dataclass(frozen=True)
class ConversationSpec:
    """Multi-turn mode (`workload.conversation`): how many turns a synthetic conversation has,
    a cap on any conversation's turns, and the think time before each turn after the first."""

    turns: LengthSpec = LengthSpec(mean=2, max=limits.MAX_TURNS)
    max_turns: int = limits.MAX_TURNS
    think_time: ThinkTimeSpec = ThinkTimeSpec()


DEFAULT_PORTS = {"http": 80, "redis": 6379}


@dataclass(frozen=True)
class LoadConfig:
    """Everything `engine.run_trial` needs; build it with `from_workload`."""

    targets: tuple[str, ...]          # base URLs; requests take them in turn (all-to-all)
    api: str
    model: str
    stream: bool = True
    duration: float | None = 10.0     # measured window (s); None: until max_requests
    warmup: float = 0.0
    max_requests: int | None = None   # measured requests of this executor (0: its share of
                                      # a count smaller than the executor count is nothing)
    request_timeout: float = 60.0
    concurrency: int = 1              # closed-loop slots of this executor
    load: LoadSpec = LoadSpec()
    dataset: DatasetSpec = DatasetSpec()
    run_id: str = "standalone"
    trial_id: str = "trial-0"
    executor_id: str = "executor-0"
    node: str = "localhost"
    executor_index: int = 0
    executor_count: int = 1
    batch_interval: float = 1.0       # seconds between sample batches
    batch_max_rows: int = MAX_ROWS    # cut a batch early when this many requests finished
    slo: dict = field(default_factory=dict)
    batch: int = 1                    # prompts per request (openai-completions prompt list)
    max_tokens: int | None = None     # caps every request's max_tokens / num_predict
    request_extras: dict = field(default_factory=dict)   # service plugin's extra body fields
    api_config: dict = field(default_factory=dict)      # workload.api_config, as checked by
                                                         # the protocol's check_config
    conversation: ConversationSpec | None = None         # multi-turn mode; None: single requests

    @property
    def endpoints(self) -> list[tuple[str, int, str]]:
        """(host, port, base path) of every target, in order."""
        return [(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme],
                 parts.path.rstrip("/")) for parts in map(urlsplit, self.targets)]

    @classmethod
    def from_workload(cls, workload: dict, targets: str | list[str], executor_index: int = 0,
                      executor_count: int = 1, run_id: str = "standalone",
                      trial_id: str = "trial-0", executor_id: str | None = None,
                      node: str = "localhost", request_extras: dict | None = None
                      ) -> "LoadConfig":
        """Resolve one executor's share of a trial workload (field names: docs/executor.md).

        `targets`: one base URL, or several that the executor's requests take in turn
        (distribution_strategy all-to-all). `request_extras` are top-level JSON body fields a
        service plugin adds to every request (`ServicePlugin.request_extras`, e.g. vLLM's
        ignore_eos)."""
        if not isinstance(workload, dict):
            raise config_error(f"workload must be a mapping, got {type(workload).__name__}")
        if not (isinstance(executor_count, int) and executor_count >= 1
                and isinstance(executor_index, int) and 0 <= executor_index < executor_count):
            raise config_error(f"executor_index={executor_index!r} / executor_count="
                               f"{executor_count!r}: need 0 <= index < count")
        get = _Reader(workload, "workload")
        api = get.text("api", "openai-chat")
        protocol = _installed_protocol(api, node)
        targets = [targets] if isinstance(targets, str) or targets is None else list(targets)
        if not targets:
            raise config_error("no target URL: give at least one http://HOST:PORT")
        for url in targets:
            _check_url(url, protocol.scheme)
        load = get.mapping("load")
        pattern = _Reader(load, "workload.load").choice("pattern", PATTERNS, "closed")
        duration = get.duration("duration", 10.0, allow_none=True)
        max_requests = get.integer("max_requests", None, minimum=1, allow_none=True,
                                   maximum=limits.MAX_REQUESTS)
        if not duration and max_requests is None:
            raise config_error("workload.duration and workload.max_requests are both unset/0: "
                               "set a duration (e.g. \"60s\") or a request count")
        dataset = _dataset_spec(get.mapping("dataset"))
        conversation = _conversation_spec(workload, dataset, protocol)
        batch = _batch(get, protocol)
        return cls(
            targets=tuple(url.rstrip("/") for url in targets), api=api,
            model=get.text("model", None),
            stream=_stream(get, protocol),
            duration=duration or None,
            warmup=get.duration("warmup", 0.0),
            max_requests=None if max_requests is None else
            _share(max_requests, executor_index, executor_count),
            request_timeout=get.duration("request_timeout", 60.0, positive=True),
            concurrency=_concurrency(get, executor_index, executor_count) if pattern == "closed"
            else 0,
            load=_load_spec(load, pattern, executor_index, executor_count),
            dataset=dataset,
            run_id=str(run_id), trial_id=str(trial_id),
            executor_id=executor_id or f"executor-{executor_index}", node=str(node),
            executor_index=executor_index, executor_count=executor_count,
            slo=dict(get.mapping("slo")),
            batch=batch,
            max_tokens=get.integer("max_tokens", None, minimum=1, allow_none=True,
                                   maximum=limits.MAX_TOKENS),
            request_extras=dict(_Reader({"request_extras": request_extras}, "config")
                                .mapping("request_extras")),
            api_config=protocol.check_config(dict(get.mapping("api_config"))),
            conversation=conversation,
        )


def _installed_protocol(api: str, node: str):
    """The protocol `api` as this process finds it; an unknown one is E006 saying where the
    executor runs, since that is where its plugin must be installed."""
    if api not in known_protocols():
        raise config_error(
            f"workload.api {api!r} is not a protocol installed where this executor runs "
            f"(node {node}, {sys.executable})",
            [f"installed: {', '.join(known_protocols())}",
             f"fix: install the package that registers {api!r} (entry-point group "
             "'hpcbench.protocols') into the Python the executors run: the submit directory's "
             ".venv for runtime: process, the executor image for runtime: apptainer "
             "(containers/plugins/, make images); see docs/services.md"])
    return get_protocol(api)


def _share(total: int, index: int, count: int) -> int:
    """This executor's part of an integer total split as evenly as possible."""
    return total // count + (1 if index < total % count else 0)


def with_executor_share(workload: dict, executor_index: int,
                        executor_nodes: dict[int, str]) -> dict:
    """The workload the coordinator sends one executor: when closed-loop slots come from
    `clients_per_node` (no total `concurrency`), that node's clients are split over the
    executors on it as `executor_concurrency` (the split `coordinator.plan.
    executor_concurrency` shows), instead of every executor running all of them.

    `executor_nodes` maps every executor index of the session to its node."""
    load = workload.get("load")
    if workload.get("concurrency") is not None or workload.get("clients_per_node") is None \
            or (isinstance(load, dict) and load.get("pattern", "closed") != "closed"):
        return workload                   # open loop: no slots to split
    node = executor_nodes[executor_index]
    peers = sorted(index for index, peer_node in executor_nodes.items() if peer_node == node)
    clients = workload["clients_per_node"]
    if not isinstance(clients, int) or isinstance(clients, bool):
        return workload                   # from_workload names the bad value
    share = _share(clients, peers.index(executor_index), len(peers))
    if share == 0:
        raise config_error(f"workload.clients_per_node={clients} is smaller than the "
                           f"{len(peers)} executors on node {node}: raise clients_per_node or "
                           "lower orchestration.node_allocation.clients.executors_per_node")
    return {**workload, "executor_concurrency": share}


def _stream(get: "_Reader", protocol) -> bool:
    """Streamed answers: the recipe's choice, by default whether the protocol streams."""
    stream = get.boolean("stream", protocol.streams)
    if stream and not protocol.streams:
        raise config_error(f"workload.stream=true: api {protocol.name!r} answers every request "
                           "whole, it does not stream", ["fix: set stream: false or leave it out"])
    return stream


def _batch(get: "_Reader", protocol) -> int:
    batch = get.integer("batch", 1, minimum=1, maximum=limits.MAX_BATCH)
    if batch > 1 and not protocol.batches:
        able = [name for name in known_protocols() if get_protocol(name).batches]
        raise config_error(f"workload.batch={batch} needs api: {' or '.join(able)} (an API that "
                           f"takes a list of prompts in one request), not {protocol.name}; use "
                           "batch: 1")
    return batch


def _concurrency(get: "_Reader", index: int, count: int) -> int:
    """Closed-loop slots of this executor: the coordinator's explicit share
    (`executor_concurrency`, from coordinator.plan.executor_concurrency: it splits
    clients_per_node over a node's executors), else its part of the total `concurrency`,
    else `clients_per_node` (one executor per node)."""
    most = limits.MAX_IN_FLIGHT
    share = get.integer("executor_concurrency", None, minimum=1, allow_none=True, maximum=most)
    if share is not None:
        return share
    total = get.integer("concurrency", None, minimum=1, allow_none=True, maximum=most)
    if total is not None:
        slots = _share(total, index, count)
        if slots == 0:
            raise config_error(f"workload.concurrency={total} is smaller than the {count} "
                               "executors: raise it or use fewer client nodes")
        return slots
    return get.integer("clients_per_node", 1, minimum=1, maximum=most)


def _load_spec(load: dict, pattern: str, index: int, count: int) -> LoadSpec:
    get = _Reader(load, "workload.load")
    ramp_up = get.duration("ramp_up", 0.0)
    if pattern in ("closed", "trace"):
        trace = get.text("trace", None) if pattern == "trace" else None
        return LoadSpec(pattern=pattern, trace=trace, ramp_up=ramp_up)
    if pattern == "burst":
        burst_size = get.integer("burst_size", None, minimum=1, maximum=limits.MAX_IN_FLIGHT)
        share = _share(burst_size, index, count)
        if share == 0:
            raise config_error(f"workload.load.burst_size={burst_size} is smaller than the "
                               f"{count} executors: raise it or use fewer client nodes")
        return LoadSpec(pattern=pattern, burst_size=share,
                        burst_pause=get.duration("burst_pause", None, positive=True),
                        ramp_up=ramp_up)
    rate = get.number("rate", None, minimum=limits.MIN_RATE, maximum=limits.MAX_RATE)
    per_executor = rate / count
    return LoadSpec(pattern=pattern, rate=per_executor,
                    burstiness=get.number("burstiness", 1.0, minimum=limits.MIN_BURSTINESS,
                                          maximum=limits.MAX_BURSTINESS),
                    ramp_up=ramp_up, phase_offset=index / count / per_executor)


def _dataset_spec(dataset: dict) -> DatasetSpec:
    get = _Reader(dataset, "workload.dataset")
    kind = get.choice("kind", DATASET_KINDS, "synthetic")
    path = get.text("path", None) if kind in ("sharegpt", "jsonl") else None
    output = dataset.get("output_tokens")
    own_lengths = kind in ("sharegpt", "jsonl") and output is None
    return DatasetSpec(
        kind=kind, path=path,
        input_tokens=_length_spec(dataset.get("input_tokens"), "workload.dataset.input_tokens"),
        output_tokens=None if own_lengths else
        _length_spec(output, "workload.dataset.output_tokens"),
        ignore_eos=get.boolean("ignore_eos", False),
        seed=get.integer("seed", 0, minimum=0, maximum=limits.MAX_SEED),
        shared_prefix=_shared_prefix_spec(dataset.get("shared_prefix"), kind),
    )


MAX_SHARED_PREFIXES = 1000


def _shared_prefix_spec(value, kind: str) -> SharedPrefixSpec | None:
    """workload.dataset.shared_prefix: {count, tokens, fractions} (fractions default to an even
    split of every prompt over the `count` prefixes)."""
    where = "workload.dataset.shared_prefix"
    if value is None:
        return None
    if kind != "synthetic":
        raise config_error(f"{where} is set with kind={kind!r}: shared prefixes are generated "
                           "for synthetic prompts only; set workload.dataset.kind: synthetic or "
                           "remove shared_prefix")
    get = _Reader(value, where)
    unknown = sorted(set(value) - {"count", "tokens", "fractions"})
    if unknown:
        raise config_error(f"{where}.{unknown[0]}: unknown key; the keys are count, tokens and "
                           "fractions")
    tokens = get.integer("tokens", None, minimum=1, maximum=limits.MAX_TOKENS)
    fractions = value.get("fractions")
    count = get.integer("count", len(fractions) if isinstance(fractions, list) else None,
                        minimum=1, maximum=MAX_SHARED_PREFIXES)
    if fractions is None:
        return SharedPrefixSpec(tokens, (1.0 / count,) * count)
    if not isinstance(fractions, list) or len(fractions) != count or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f <= 1
            for f in fractions):
        raise config_error(f"{where}.fractions={_shown(fractions)}: expected a list of {count} "
                           "fractions 0..1, one per prefix (e.g. [0.5, 0.25])")
    if sum(fractions) > 1 + 1e-9:
        raise config_error(f"{where}.fractions={_shown(fractions)} add up to "
                           f"{sum(fractions):g}: a prompt has at most one prefix, so they must "
                           "add up to at most 1 (the rest get no shared prefix)")
    return SharedPrefixSpec(tokens, tuple(float(f) for f in fractions))


def _conversation_spec(workload: dict, dataset: DatasetSpec, protocol
                       ) -> ConversationSpec | None:
    """`workload.conversation` (None when absent: every request stands alone). Its presence,
    even as `{}`, switches the trial to conversations; `turns` shapes synthetic ones only
    (file datasets bring their own turns), `max_turns` caps every kind."""
    if workload.get("conversation") is None:
        return None
    where = "workload.conversation"
    conversation = _Reader(workload, "workload").mapping("conversation")
    for path, value, expected in conversation_problems(conversation, dataset.kind, protocol,
                                                       workload.get("batch")):
        raise config_error(f"{path}={_shown(value)}: expected {expected}")
    get = _Reader(conversation, where)
    return ConversationSpec(
        turns=_length_spec(conversation.get("turns", 2), f"{where}.turns", limits.MAX_TURNS),
        max_turns=get.integer("max_turns", limits.MAX_TURNS, minimum=1,
                              maximum=limits.MAX_TURNS),
        think_time=_think_time_spec(conversation.get("think_time"), f"{where}.think_time"))


def _think_time_spec(value, where: str) -> ThinkTimeSpec:
    """A duration (fixed), or {distribution: fixed|uniform|exponential, mean, min, max} with
    durations as values (completeness checked by conversation_problems)."""
    if value is None:
        return ThinkTimeSpec()
    if not isinstance(value, dict):
        seconds = _Reader({"think_time": value}, where.rsplit(".", 1)[0]).duration(
            "think_time", None)
        return ThinkTimeSpec("fixed", seconds, seconds, seconds)
    get = _Reader(value, where)
    distribution = get.choice("distribution", THINK_DISTRIBUTIONS, "fixed")
    low, high = get.duration("min", 0.0), get.duration("max", 0.0)
    mean = get.duration("mean", (low + high) / 2)
    return ThinkTimeSpec(distribution, mean, low, high)


def _length_spec(value, where: str, most: int = limits.MAX_TOKENS) -> LengthSpec:
    if value is None:
        return LengthSpec()
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"distribution": "fixed", "mean": value}
    get = _Reader(value, where)
    distribution = get.choice("distribution", DISTRIBUTIONS, "fixed")
    tokens = most
    low = get.integer("min", 1, minimum=1, maximum=tokens)
    high = get.integer("max", tokens, minimum=1, maximum=tokens)
    if high < low:
        raise config_error(f"{where}: max={high} < min={low}; make max >= min")
    default_mean = (low + high) // 2 if distribution == "uniform" else None
    mean = get.integer("mean", default_mean, minimum=1, maximum=tokens)
    stddev = get.number("stddev", 0.0, minimum=0.0, maximum=tokens)
    if distribution == "normal" and "stddev" not in value:
        raise config_error(f"{where}: a normal distribution needs stddev (e.g. stddev: 32)")
    return LengthSpec(distribution, mean, low, high, stddev)


def _check_url(url: object, scheme: str = "http") -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme != scheme or not parts.hostname:
        raise config_error(f"target URL {url!r} is not usable: give {scheme}://HOST:PORT "
                           "(https is not supported by the executor)")
    try:
        _ = parts.port   # urllib checks the port only when it is read
    except ValueError:
        raise config_error(f"target URL {url!r} has a bad port: use 1..65535") from None


def _shown(value: object) -> str:
    """A value as a message shows it: a 4000-digit integer is cut, not printed whole."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Reader:
    """Typed field access on a workload mapping; every failure names `where.field` and a fix."""

    def __init__(self, data, where: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise config_error(f"{where} must be a mapping, got {data!r}")
        self.data, self.where = data, where

    def _value(self, name, default, allow_none=False):
        """(value or default, whether it was missing); a missing required field is an error."""
        value = self.data.get(name)
        if value is None:
            if default is None and not allow_none:
                raise config_error(f"{self.where}.{name} is required")
            return default, True
        return value, False

    def mapping(self, name) -> dict:
        value = self.data.get(name)
        if value is not None and not isinstance(value, dict):
            raise config_error(f"{self.where}.{name} must be a mapping, got {value!r}")
        return value or {}

    def choice(self, name, options, default):
        value, _ = self._value(name, default)
        if value not in options:
            raise config_error(f"{self.where}.{name}={value!r} is not one of "
                               f"{', '.join(options)}")
        return value

    def text(self, name, default):
        value, _ = self._value(name, default)
        if not isinstance(value, str) or not value.strip():
            raise config_error(f"{self.where}.{name}={value!r}: expected a non-empty string")
        return value

    def boolean(self, name, default):
        value, _ = self._value(name, default)
        if not isinstance(value, bool):
            raise config_error(f"{self.where}.{name}={value!r}: expected true or false")
        return value

    def number(self, name, default, positive=False, minimum=None, maximum=None):
        value, _ = self._value(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or (positive and value <= 0) or \
                (minimum is not None and value < minimum) or \
                (maximum is not None and value > maximum):
            bound = "> 0" if positive else f">= {minimum}" if minimum is not None else "finite"
            bound += f" and <= {maximum}" if maximum is not None else ""
            raise config_error(f"{self.where}.{name}={_shown(value)}: expected a number {bound}")
        return float(value)

    def integer(self, name, default, minimum=None, allow_none=False, maximum=None):
        value, missing = self._value(name, default, allow_none)
        if missing and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or \
                (minimum is not None and value < minimum) or \
                (maximum is not None and value > maximum):
            bound = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
            raise config_error(f"{self.where}.{name}={_shown(value)}: expected an integer {bound}")
        return value

    def duration(self, name, default, allow_none=False, positive=False):
        value, missing = self._value(name, default, allow_none)
        if missing and value is None:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            raise config_error(f"{self.where}.{name}: {error}") from None
        if positive and seconds <= 0:
            raise config_error(f"{self.where}.{name}={value!r}: must be > 0")
        return seconds
