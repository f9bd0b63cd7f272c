"""The kserve-v2 client of the example plugin (servers/examples/kserve) on exact bytes: its
requests, its configuration's errors and how it classifies answers, against a scripted server
on a real socket. Imported from the source folder; installing it as a package (entry points,
a fresh venv) is tests/integration/test_plugin_examples.py's."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.executor.wire import RequestInput
from hpcbench.proto.samples import ErrorClass
from tests.support.executor_runs import rows, run_load
from tests.support.scripted_http import ScriptedServer

SOURCE = Path(__file__).resolve().parents[2] / "servers" / "examples" / "kserve"


@pytest.fixture
def client(monkeypatch):
    """The plugin's protocol module, importable for this test only: a pip build leaves
    hpcbench_kserve_example.egg-info in SOURCE, whose entry points would otherwise stay
    visible to every later test of the process."""
    monkeypatch.syspath_prepend(str(SOURCE))
    return importlib.import_module("hpcbench_kserve.protocol")


@pytest.fixture
def kserve(client, installed):
    from hpcbench.executor import protocol_registry

    installed(protocol_registry, {"kserve-v2": "hpcbench_kserve.protocol:KServeV2Protocol"})


def answer(obj, status: str = "200 OK") -> bytes:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status.encode(), len(body), body)


GOOD = {"model_name": "m", "outputs": [
    {"name": "OUTPUT0", "datatype": "FP64", "shape": [2], "data": [1.0, 2.5]},
    {"name": "OUTPUT1", "datatype": "INT64", "shape": [1, 1], "data": [[7]]}]}


def test_requests_carry_the_prompt_in_every_input_tensor(client):
    protocol = client.KServeV2Protocol()
    config = protocol.check_config({"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [2]},
        {"name": "ids", "datatype": "INT8", "shape": [1, 5]},
        {"name": "x", "datatype": "FP32", "shape": [3]},
        {"name": "mask", "datatype": "BOOL", "shape": [2]}], "outputs": ["OUTPUT0"],
        "version": 2})
    built = protocol.configured(config).request(
        RequestInput("my model", "hé", None, False, False, index=4, executor_index=1))
    assert built.method == "POST" and built.path == "/v2/models/my%20model/versions/2/infer"
    assert built.body["id"] == "1-4" and built.body["outputs"] == [{"name": "OUTPUT0"}]
    tensors = {tensor["name"]: tensor for tensor in built.body["inputs"]}
    assert tensors["text"]["data"] == ["hé", "hé"]
    assert tensors["ids"]["data"] == [104, 67, 41, 104, 67]      # bytes of "hé" mod 128, again
    assert tensors["x"]["data"] == [26.0, 48.75, 42.25]         # byte / 4
    assert tensors["mask"]["data"] == [False, True]
    assert client.tensor_data("UINT8", 0, "") == []


@pytest.mark.parametrize("config, words", [
    ({"input": []}, "workload.api_config.input: not a kserve-v2 key"),
    ({"inputs": []}, "inputs is empty"),
    ({"inputs": [{"name": "a", "datatype": "FP99"}]}, "inputs[0].datatype='FP99'"),
    ({"inputs": [{"name": "a", "shape": [-1, 4]}]}, "no -1"),
    ({"inputs": [{"name": "a", "shape": [1024, 1024]}]}, "1,048,576 elements per request"),
    ({"inputs": [{"name": "a"}, {"name": "a"}]}, "share a name"),
    ({"inputs": [{"datatype": "FP32"}]}, "inputs[0].name=None"),
    ({"outputs": "OUTPUT0"}, "outputs: expected a list"),
    ({"version": "latest"}, "version='latest'"),
])
def test_a_bad_configuration_is_e006_naming_the_key(client, config, words):
    with pytest.raises(HpcbenchError) as error:
        client.KServeV2Protocol().check_config(config)
    assert error.value.code == "E006" and words in error.value.render()


@pytest.mark.parametrize("body, error", [
    (GOOD, ErrorClass.OK),
    ({"error": "model is unloading"}, ErrorClass.HTTP_STATUS),
    (b"<html>oops</html>", ErrorClass.PROTOCOL),
    (b'"just a string with error in it"', ErrorClass.PROTOCOL),
    ({"outputs": "none"}, ErrorClass.PROTOCOL),
    ({"model_name": "m"}, ErrorClass.PROTOCOL),
    ({"outputs": [{"name": "OUTPUT0", "datatype": "FP64", "shape": [3], "data": [1.0]}]},
     ErrorClass.PROTOCOL),
    ({"outputs": [{"name": "OUTPUT0", "datatype": "FP64", "shape": [1]}]}, ErrorClass.PROTOCOL),
    ({"outputs": [{"name": "OUTPUT1", "datatype": "INT64", "shape": [1], "data": [3]}]},
     ErrorClass.PROTOCOL),                 # OUTPUT0 was asked for and is missing
])
def test_answers_are_classified_whole(kserve, body, error):
    server = ScriptedServer([answer(body)])
    try:
        _, batches = run_load(server.url, api="kserve-v2", max_requests=1,
                              api_config={"outputs": ["OUTPUT0"]})
    finally:
        server.close()
    row = {name: column[0] for name, column in rows(batches).items()}
    assert row["error"] == error
    if error == ErrorClass.OK:
        assert row["chunks"] == 1 and row["tokens_out"] == 1
        assert row["first_ns"] == row["end_ns"]          # TTFT is the response time
    assert server.heads[0].startswith(b"POST /v2/models/sim-model/infer HTTP/1.1\r\n")
    assert server.bodies[0]["inputs"][0]["datatype"] == "BYTES"


def test_http_errors_keep_their_status(kserve):
    server = ScriptedServer([answer({"error": "unknown model"}, "404 Not Found"),
                             answer({"error": "bad input"}, "400 Bad Request")])
    try:
        _, batches = run_load(server.url, api="kserve-v2", max_requests=2)
    finally:
        server.close()
    table = rows(batches)
    assert list(table["status"]) == [404, 400]
    assert set(table["error"].tolist()) == {ErrorClass.HTTP_STATUS}
