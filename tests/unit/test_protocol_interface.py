"""What a protocol plugin can express through executor/wire.py, seen on the wire: its own
method, path and headers, a configuration from `workload.api_config`, answers read whole or a
stream judged once complete, and the E006 for a request that would not be well formed.

The plugins (tests/support/plugin_shapes.py) are loaded through real EntryPoint objects; the
server is a scripted one on a real socket."""
from __future__ import annotations

import json

import pytest
import uvloop

from hpcbench.common.errors import HpcbenchError
from hpcbench.executor import protocol_registry
from hpcbench.executor.config import LoadConfig
from hpcbench.executor.engine import Trial, run_trial
from hpcbench.executor.sinks import MemorySink
from hpcbench.proto.samples import ErrorClass
from tests.support.executor_runs import rows, run_load
from tests.support.scripted_http import ScriptedServer

SHAPES = "tests.support.plugin_shapes"


def response(body: bytes, status: str = "200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status.encode(), len(body), body)


@pytest.fixture
def plugins(installed):
    installed(protocol_registry, {name: f"{SHAPES}:{cls}" for name, cls in (
        ("get-with-headers", "GetWithHeaders"), ("whole-stream", "WholeStream"),
        ("raw-bytes", "RawBytes"), ("bad-requests", "BadRequests"))})


@pytest.fixture
def server():
    started = []

    def start(responses):
        started.append(ScriptedServer(responses))
        return started[-1]

    yield start
    for each in started:
        each.close()


def test_a_plugin_sends_its_own_method_path_and_headers_and_reads_answers_whole(plugins, server):
    scripted = server([response(b'{"ok": true}'), response(b'{"ok": false}'),
                       response(b"", "503 Service Unavailable")])
    stats, batches = run_load(scripted.url, api="get-with-headers", max_requests=3,
                              model="m1", api_config={"token": "s3cret"})
    heads = [head.decode().split("\r\n") for head in scripted.heads]
    assert [lines[0] for lines in heads] == [f"GET /items/{k}?model=m1 HTTP/1.1" for k in range(3)]
    for lines in heads:
        names = [line.split(":", 1)[0].lower() for line in lines[1:]]
        assert "Authorization: Bearer s3cret" in lines and names.count("accept") == 1
        assert "Accept: application/json" in lines and "content-length" not in names
        assert "x-request-id" in names and "content-type" not in names
    table = rows(batches)
    assert list(table["error"]) == [ErrorClass.OK, ErrorClass.HTTP_STATUS, ErrorClass.HTTP_STATUS]
    assert list(table["status"]) == [200, 200, 503]
    assert table["chunks"][0] == 1 and table["first_ns"][0] == table["end_ns"][0]


def test_a_protocol_that_does_not_stream_is_read_whole_and_refuses_stream_true(plugins):
    workload = {"api": "get-with-headers", "model": "m", "duration": 0, "max_requests": 1}
    assert LoadConfig.from_workload(workload, "http://127.0.0.1:9").stream is False
    with pytest.raises(HpcbenchError) as error:
        LoadConfig.from_workload({**workload, "stream": True}, "http://127.0.0.1:9")
    assert error.value.code == "E006" and "does not stream" in error.value.message


def test_api_config_is_the_protocols_to_check(plugins):
    workload = {"api": "get-with-headers", "model": "m", "duration": 0, "max_requests": 1}
    config = LoadConfig.from_workload(workload, "http://127.0.0.1:9")
    assert config.api_config == {"token": "t0"}                # the protocol's default
    with pytest.raises(HpcbenchError, match="workload.api_config.colour: not a key"):
        LoadConfig.from_workload({**workload, "api_config": {"colour": 1}}, "http://127.0.0.1:9")
    with pytest.raises(HpcbenchError) as error:                 # a built-in takes none
        LoadConfig.from_workload({"model": "m", "duration": 1, "api_config": {"x": 1}},
                                 "http://127.0.0.1:9")
    assert "takes no configuration" in error.value.message


def test_end_judges_a_stream_once_it_is_complete(plugins, server):
    def chunked(*lines: bytes) -> bytes:
        body = b"".join(b"%x\r\n%s\r\n" % (len(line), line) for line in lines)
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"

    scripted = server([chunked(b"tok\n", b"tok\n", b"END\n"), chunked(b"tok\n", b"tok\n")])
    _, batches = run_load(scripted.url, api="whole-stream", max_requests=2)
    table = rows(batches)
    assert list(table["error"]) == [ErrorClass.OK, ErrorClass.PROTOCOL]
    assert list(table["chunks"]) == [2, 2]
    assert all(body == {"prompt": body["prompt"]} for body in scripted.bodies)


def test_a_bytes_body_goes_as_it_is_with_the_protocols_content_type(plugins, server):
    scripted = server([response(b"done")])
    run_load(scripted.url, api="raw-bytes", max_requests=1, dataset={"input_tokens": 4})
    lines = scripted.heads[0].decode().split("\r\n")
    assert lines[0] == "PUT /raw HTTP/1.1" and "Content-Type: application/x-tokens" in lines
    assert isinstance(scripted.bodies[0], bytes) and len(scripted.bodies[0].split()) == 4


@pytest.mark.parametrize("kind, words", [
    ("head", "method 'HEAD'"),
    ("path", "percent-encode"),
    ("host", "header Host, which the executor writes itself"),
    ("newline", "without line breaks"),
    ("dict", "built dict instead of an HttpRequest"),
    ("nan", "a body that is not JSON"),
    ("bytes-with-extras", "request_extras (priority) need a JSON object body"),
    ("bug", "failed to build a request: RuntimeError: a bug in the plugin"),
])
def test_a_request_that_would_not_be_well_formed_is_e006_naming_the_api(plugins, kind, words):
    config = LoadConfig.from_workload(
        {"api": "bad-requests", "model": "has space", "duration": 0, "max_requests": 1,
         "api_config": {"kind": kind}}, "http://127.0.0.1:9", request_extras={"priority": 1}
        if kind == "bytes-with-extras" else None)
    with pytest.raises(HpcbenchError) as error:
        Trial(config, MemorySink())
    assert error.value.code == "E006" and "'bad-requests'" in error.value.render()
    assert words in error.value.render()


def test_recipe_validation_asks_the_protocol(plugins):
    from hpcbench.recipes import recipe_from_dict

    recipe = {"scenario": "s", "workload": {
        "service": "simulator", "model": "m", "api": "get-with-headers", "stream": True,
        "api_config": {"colour": "red"}}}
    with pytest.raises(HpcbenchError) as error:
        recipe_from_dict(recipe)
    shown = error.value.render()
    assert "workload.stream: got True; expected false or nothing" in shown
    assert "workload.api_config: got {'colour': 'red'}" in shown and "only key is token" in shown
    del recipe["workload"]["stream"], recipe["workload"]["api_config"]
    resolved = recipe_from_dict(recipe).workload
    assert resolved["stream"] is False and resolved["api_config"] == {}


def test_built_in_requests_are_the_bytes_they_were(server):
    """The built-ins go through the same request() interface: the body a chat request sends."""
    scripted = server([response(json.dumps({"choices": [{"message": {"content": "x"}}]})
                                .encode())])
    config = LoadConfig.from_workload({"model": "m", "duration": 0, "max_requests": 1,
                                       "stream": False, "max_tokens": 3,
                                       "dataset": {"input_tokens": 2, "ignore_eos": True}},
                                      scripted.url)
    uvloop.run(run_trial(config, MemorySink()))
    lines = scripted.heads[0].decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    assert "Content-Type: application/json" in lines
    body = scripted.bodies[0]
    assert body == {"model": "m", "stream": False, "max_tokens": 3, "ignore_eos": True,
                    "messages": [{"role": "user", "content": body["messages"][0]["content"]}]}


def test_an_api_not_installed_where_the_executor_runs_says_where_to_install_it():
    with pytest.raises(HpcbenchError) as error:
        LoadConfig.from_workload({"api": "kserve-v2", "model": "m", "duration": 1},
                                 "http://127.0.0.1:9", node="node3")
    shown = error.value.render()
    assert error.value.code == "E006" and "'kserve-v2' is not a protocol installed where this " \
        "executor runs (node node3, " in shown
    assert "installed: openai-chat" in shown and "the executor image" in shown
