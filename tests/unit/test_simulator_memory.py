"""A finished request leaves no reference cycle: its objects are freed by refcount at once.

With the cyclic GC disabled, per-request objects (Generation, Submission, Exchange, outputs)
that sat in a cycle would pile up until a collection; under load that made the GC run
constantly. Every way a request can end is covered: served (streamed, whole, batched, both
APIs), cancelled by the client, and cut by a disconnect fault. A closed connection (its
protocol and transport) goes the same way.
"""
import gc
import http.client
import json
from urllib.parse import urlsplit

import pytest

from hpcbench.common.stamped_socket import SocketTransport
from hpcbench.servers.simulator import engine, ollama_api, openai_api, start_simulator
from hpcbench.servers.simulator import http as sim_http
from tests.support.waiting import wait_until

PER_REQUEST = (engine.Generation, engine.Submission, sim_http.Exchange,
               openai_api.StreamedOutput, openai_api.WholeOutput,
               ollama_api.StreamedOutput, ollama_api.WholeOutput)
PER_CONNECTION = (sim_http.HttpConnection, SocketTransport)
ROUNDS = 10


def post(url: str, path: str, body: dict) -> int:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionError, http.client.HTTPException):
        return 0     # a disconnect fault cut the answer
    finally:
        connection.close()


def live_objects(types: tuple = PER_REQUEST) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        if type(obj) in types:
            name = f"{type(obj).__module__.rsplit('.', 1)[-1]}.{type(obj).__name__}"
            counts[name] = counts.get(name, 0) + 1
    return counts


def assert_all_freed(sim) -> None:
    """With the cyclic GC off only refcounts free objects, so a cycle would stay forever. The
    count is taken on the simulator's thread, once it has finished the step that wrote the
    last answer (the client may read that answer before the step ends)."""
    assert sim.on_loop(live_objects) == {}
    # every client closed its connection; the simulator frees its side once it reads the EOF
    wait_until(lambda: sim.on_loop(lambda: live_objects(PER_CONNECTION)) == {},
               what="closed connections freed (a transport <-> protocol cycle would stay)")


@pytest.fixture
def gc_disabled():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_served_requests_leave_no_objects_behind(gc_disabled):
    with start_simulator(mode="fixed", ttft_ms=0, itl_ms=0, record_truth=True) as sim:
        model = sim.config.model
        for round_number in range(ROUNDS):
            stream = round_number % 2 == 0
            for path, body in (
                    ("/v1/completions", {"prompt": "a b", "stream": stream}),
                    ("/v1/completions", {"prompt": ["a", "b c", "d"], "stream": stream}),
                    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                              "stream": stream}),
                    ("/api/generate", {"prompt": "a", "stream": stream,
                                       "options": {"num_predict": 3}})):
                assert post(sim.url, path, {"model": model, "max_tokens": 3, **body}) == 200
        wait_until(lambda: sim.served == 4 * ROUNDS, what="every request served")
        assert_all_freed(sim)


def test_cancelled_and_disconnected_requests_leave_no_objects_behind(gc_disabled):
    with start_simulator(mode="fixed", ttft_ms=0, itl_ms=0, disconnect_rate=0.5,
                         disconnect_at_token=2, record_truth=True) as sim:
        for _ in range(ROUNDS):
            post(sim.url, "/v1/completions", {"model": sim.config.model, "max_tokens": 4,
                                              "prompt": ["a", "b"], "stream": True})
        wait_until(lambda: len(sim.truth) == ROUNDS, what="a truth record per request")
        outcomes = {record["outcome"] for record in sim.truth}
        assert outcomes == {"served", "disconnect"}
        assert_all_freed(sim)
