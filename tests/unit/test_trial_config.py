"""The trial configuration contract (proto/trial.py): what CONFIGURE carries, checked both ways."""
from __future__ import annotations

import json

import pytest

from hpcbench.proto.trial import SCHEMA_VERSION, TrialConfig, TrialConfigError

CONFIG = TrialConfig(run_id="r1", trial_id="t0", executor_index=1, executor_count=2, node="n1",
                     targets=["http://127.0.0.1:8000"], workload={"duration": 5.0},
                     request_extras={"ignore_eos": True})


def test_a_configuration_survives_the_wire():
    assert TrialConfig.decode(CONFIG.encode()) == CONFIG
    assert json.loads(CONFIG.encode())["v"] == SCHEMA_VERSION
    histograms = TrialConfig(**{**CONFIG.__dict__, "samples": {
        "mode": "histograms", "raw_file": "/results/t0/node_samples/executor-1.msgpack"}})
    assert TrialConfig.decode(histograms.encode()) == histograms


def test_a_configuration_without_samples_sends_raw_batches():
    message = json.loads(CONFIG.encode())
    del message["samples"]
    assert TrialConfig.decode(json.dumps(message)).samples == {"mode": "raw"}


@pytest.mark.parametrize("change, named", [
    ({"v": 99}, "schema version 99"),
    ({"targets": []}, "'targets'"),
    ({"executor_index": 2}, "executor_index 2"),
    ({"executor_count": "2"}, "'executor_count' must be int"),
    ({"workload": [1]}, "'workload' must be dict"),
    ({"trial_id": True}, "'trial_id' must be str"),
    ({"surprise": 1}, "unknown fields ['surprise']"),
    ({"samples": {"mode": "histograms"}}, "'samples'"),
    ({"samples": {"mode": "histograms", "raw_file": "relative/x"}}, "an absolute path"),
    ({"samples": {"mode": "fast"}}, "'samples'"),
])
def test_a_bad_field_is_named(change, named):
    message = json.loads(CONFIG.encode())
    message.update(change)
    with pytest.raises(TrialConfigError) as error:
        TrialConfig.decode(json.dumps(message))
    assert named in str(error.value)


@pytest.mark.parametrize("payload, named", [
    ("not json", "not JSON"), ("[1, 2]", "JSON object"), ('{"v": 1}', "lacks 'run_id'"),
    ("x" * (4 * 1024 * 1024 + 1), "exceeds"),
])
def test_garbage_is_refused_with_the_reason(payload, named):
    with pytest.raises(TrialConfigError, match=named):
        TrialConfig.decode(payload)


def test_encoding_checks_too():
    with pytest.raises(TrialConfigError, match="executor_index"):
        TrialConfig(**{**CONFIG.__dict__, "executor_index": -1}).encode()
