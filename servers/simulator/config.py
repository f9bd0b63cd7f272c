"""SimulatorConfig: every knob of the simulated inference server, validated in one place.

The simulator has two timing modes:
- "model": a small performance model of a continuous-batching server (prefill cost per prompt
  token, decode step time growing with the running batch, a cap on concurrent sequences with a
  FIFO waiting queue);
- "fixed": TTFT exactly `ttft_ms` after the request arrived and tokens exactly `itl_ms` apart,
  with no batching effect and no queue, for measuring a client's own overhead.
Fault rates are fractions of generation requests, drawn deterministically from `seed`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from hpcbench.common.errors import config_error

ERROR_STATUSES = (500, 429, 503)
MODES = ("model", "fixed")
REASONING_FIELDS = ("reasoning", "reasoning_content")


@dataclass
class SimulatorConfig:
    """What the simulator serves, how fast, and which faults it injects."""

    host: str = "127.0.0.1"
    port: int = 0
    model: str = "sim-model"
    seed: int = 0
    mode: str = "model"

    # "fixed" mode
    ttft_ms: float = 20.0
    itl_ms: float = 10.0

    # "model" mode: prefill + decode cost model of a continuous-batching server
    prefill_base_ms: float = 5.0
    prefill_ms_per_token: float = 0.05
    decode_base_ms: float = 10.0
    decode_ms_per_seq: float = 0.1
    max_num_seqs: int = 256
    kv_cache_tokens: int = 262_144
    # prefix cache (prefix_cache.py): prefill cost only for prompt blocks not cached
    prefix_caching: bool = False
    prefix_cache_tokens: int = 65_536
    prefix_block_tokens: int = 16

    # output length
    default_max_tokens: int = 128
    stop_probability: float = 0.0   # per token, without ignore_eos: early deterministic stop

    # reasoning: the first floor(reasoning_fraction * output tokens) tokens of a chat answer are
    # reasoning content (OpenAI chat: delta.<reasoning_field>; Ollama: thinking)
    reasoning_fraction: float = 0.0
    reasoning_field: str = "reasoning"

    # fault injection
    error_rate: float = 0.0
    error_status: int = 500
    stall_ms: float = 0.0
    stall_at_token: int = 1
    stall_rate: float = 1.0
    disconnect_rate: float = 0.0
    disconnect_at_token: int = 1
    no_token_rate: float = 0.0
    not_ready_s: float = 0.0
    pause_at_s: float = 0.0         # whole-server pause (event loop blocked), like a GC stall,
                                    # this long after the first generation request
    pause_ms: float = 0.0

    # ground truth
    record_truth: bool = False
    extra_models: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def models(self) -> list[str]:
        return [self.model, *self.extra_models]

    def validate(self) -> None:
        """Raise E006 naming the first bad field, its value and the accepted range."""
        problems = [f"{name}={value!r}: expected {expected}"
                    for name, value, expected in self.problems()]
        if problems:
            raise config_error("invalid simulator configuration: " + problems[0],
                               problems[1:] + ["fix the field(s) named above"])

    def problems(self) -> list[tuple[str, object, str]]:
        """(field, value, what is expected) of every bad field ("" field: a combination)."""
        problems = []

        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                problems.append((name, getattr(self, name), expected))

        check("mode", self.mode in MODES, f"one of {', '.join(MODES)}")
        check("reasoning_field", self.reasoning_field in REASONING_FIELDS,
              f"one of {', '.join(REASONING_FIELDS)}")
        check("port", isinstance(self.port, int) and 0 <= self.port <= 65535, "0..65535")
        check("model", isinstance(self.model, str) and bool(self.model.strip()), "a model name")
        check("error_status", self.error_status in ERROR_STATUSES,
              f"one of {', '.join(map(str, ERROR_STATUSES))}")
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name.endswith(("_ms", "_s", "_ms_per_token", "_ms_per_seq")):
                check(spec.name, _number(value) and value >= 0, "a number >= 0")
            if spec.name.endswith(("_rate", "_probability", "_fraction")):
                check(spec.name, _number(value) and 0 <= value <= 1, "a fraction 0..1")
        for name in ("max_num_seqs", "kv_cache_tokens", "default_max_tokens", "stall_at_token",
                     "disconnect_at_token", "prefix_cache_tokens", "prefix_block_tokens"):
            check(name, isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                  "an integer >= 1")
        check("prefix_caching", isinstance(self.prefix_caching, bool), "true or false")
        check("prefix_caching", not (self.prefix_caching is True and self.mode == "fixed"),
              "false with mode fixed (fixed mode has no prefill to spare; use mode model)")
        rates = (self.error_rate, self.disconnect_rate, self.no_token_rate)
        exclusive = sum(rates) if all(map(_number, rates)) else 0
        if exclusive > 1:
            problems.append(("error_rate", self.error_rate,
                             f"a sum error_rate + disconnect_rate + no_token_rate <= 1 (it is "
                             f"{exclusive:g}: these faults exclude each other)"))
        return problems


def settings_problems(settings: dict) -> list[tuple[str, object, str]]:
    """`problems()` of a configuration with these field values (other keys are ignored), for
    checking a recipe's service_config before anything starts."""
    config = SimulatorConfig()
    names = {spec.name for spec in fields(SimulatorConfig)}
    for name, value in settings.items():
        if name in names:
            setattr(config, name, value)      # unchecked: problems() checks them all
    return config.problems()


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
