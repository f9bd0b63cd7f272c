"""The trial configuration contract: what the coordinator tells one executor about one trial.

It travels in the Agent service's CONFIGURE command (`Command.config_json`, control.proto) as
one JSON object:
    v               schema version (SCHEMA_VERSION)
    run_id          the session id; every sample batch of the trial carries it
    trial_id        the trial (recipe sweep point and repetition)
    executor_index  this executor's index among the session's executors (0-based)
    executor_count  how many executors share the trial's load
    node            the node the executor runs on (samples name it)
    targets         the server base URLs this executor sends to (taken in turn)
    workload        this executor's share of the trial's resolved `workload` block (the recipe
                    schema's `workload`, with rate and concurrency already divided)
    request_extras  top-level JSON body fields the service plugin adds to every request
    samples         how samples travel (docs/scale.md): {"mode": "raw"} sends every batch;
                    {"mode": "histograms", "raw_file": PATH} keeps the batches in PATH (on
                    the node, in the trial's results; PATH.partial until the trial ends) and
                    sends one summary per batch (proto/samples.py). Absent: raw.

`decode` checks every field's presence and type and names the one that is wrong, so a
mismatched coordinator and executor fail with a clear message instead of a KeyError; what the
workload's own keys mean is checked where they are used (executor/config.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = 1
RAW, HISTOGRAMS = "raw", "histograms"      # the sample modes (`samples`)
MAX_PATH = 4096
MAX_BYTES = 4 * 1024 * 1024   # a configuration larger than this is no configuration


class TrialConfigError(ValueError):
    """A CONFIGURE payload that breaks this contract."""


@dataclass(frozen=True)
class TrialConfig:
    run_id: str
    trial_id: str
    executor_index: int
    executor_count: int
    node: str
    targets: list[str]
    workload: dict
    request_extras: dict = field(default_factory=dict)
    samples: dict = field(default_factory=lambda: {"mode": RAW})

    def encode(self) -> str:
        _check(asdict(self))
        return json.dumps({"v": SCHEMA_VERSION, **asdict(self)})

    @classmethod
    def decode(cls, payload: str | bytes) -> TrialConfig:
        if len(payload) > MAX_BYTES:
            raise TrialConfigError(f"trial configuration of {len(payload)} bytes exceeds "
                                   f"{MAX_BYTES}")
        try:
            message = json.loads(payload)
        except ValueError as error:
            raise TrialConfigError(f"trial configuration is not JSON: {error}") from None
        if not isinstance(message, dict):
            raise TrialConfigError("trial configuration must be a JSON object")
        if message.get("v") != SCHEMA_VERSION:
            raise TrialConfigError(f"trial configuration schema version {message.get('v')!r} is "
                                   f"not {SCHEMA_VERSION}: run the same hpcbench version on the "
                                   "coordinator and the executors")
        message = {key: value for key, value in message.items() if key != "v"}
        _check(message)
        return cls(**message)


_FIELD_TYPES = {"run_id": str, "trial_id": str, "executor_index": int, "executor_count": int,
                "node": str, "targets": list, "workload": dict, "request_extras": dict,
                "samples": dict}
_OPTIONAL = {"samples"}


def _check(message: dict) -> None:
    unknown = sorted(set(message) - set(_FIELD_TYPES))
    if unknown:
        raise TrialConfigError(f"trial configuration has unknown fields {unknown}")
    for name, kind in _FIELD_TYPES.items():
        if name not in message:
            if name in _OPTIONAL:
                continue
            raise TrialConfigError(f"trial configuration lacks {name!r}")
        value = message[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TrialConfigError(f"trial configuration field {name!r} must be "
                                   f"{kind.__name__}, got {type(value).__name__}")
    if not 0 <= message["executor_index"] < message["executor_count"]:
        raise TrialConfigError(f"executor_index {message['executor_index']} is outside 0.."
                               f"{message['executor_count'] - 1}")
    if not message["targets"] or not all(isinstance(url, str) for url in message["targets"]):
        raise TrialConfigError("trial configuration 'targets' must be a non-empty list of URLs")
    if "samples" in message:
        _check_samples(message["samples"])


def _check_samples(spec: dict) -> None:
    mode = spec.get("mode")
    if mode == RAW and set(spec) == {"mode"}:
        return
    raw_file = spec.get("raw_file")
    if mode != HISTOGRAMS or set(spec) != {"mode", "raw_file"} or not isinstance(raw_file, str) \
            or not raw_file.startswith("/") or len(raw_file) > MAX_PATH or "\0" in raw_file:
        raise TrialConfigError(f"trial configuration 'samples' {str(spec)[:200]} must be "
                               f'{{"mode": "{RAW}"}} or {{"mode": "{HISTOGRAMS}", "raw_file": '
                               f"an absolute path}}")
