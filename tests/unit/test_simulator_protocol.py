"""HTTP/1.1 and stream framing details of the simulator, seen through a raw socket."""
import json
import socket

import pytest

from hpcbench.servers.simulator import SimulatorConfig, start_simulator

FAST = dict(mode="fixed", ttft_ms=2, itl_ms=1)


def request(method: str, path: str, body: dict | None = None, headers: str = "") -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    return (f"{method} {path} HTTP/1.1\r\nHost: sim\r\n{headers}"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


class RawConnection:
    """Reads responses exactly as framed on the wire: head, then each chunk separately."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self) -> tuple[int, dict]:
        status = int(self.file.readline().split()[1])
        headers = {}
        while (line := self.file.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def chunks(self) -> list[bytes]:
        out = []
        while True:
            size = int(self.file.readline(), 16)
            data = self.file.read(size)
            assert self.file.readline() == b"\r\n"
            if size == 0:
                return out
            out.append(data)

    def response(self) -> tuple[int, dict, list[bytes] | bytes]:
        status, headers = self.head()
        if headers.get("transfer-encoding") == "chunked":
            return status, headers, self.chunks()
        return status, headers, self.file.read(int(headers["content-length"]))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def sim():
    with start_simulator(SimulatorConfig(**FAST, record_truth=True)) as handle:
        yield handle


@pytest.fixture
def conn(sim):
    connection = RawConnection(sim.port)
    yield connection
    connection.close()


CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "a b"}], "max_tokens": 5,
        "stream": True}


def test_sse_stream_is_one_event_per_chunk_ending_with_done(conn):
    conn.send(request("POST", "/v1/chat/completions",
                      CHAT | {"stream_options": {"include_usage": True}}))
    status, headers, chunks = conn.response()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    token_events = chunks[:5]
    for event in token_events:
        assert event.startswith(b"data: {") and event.endswith(b"\n\n") and event.count(b"data:") == 1
        chunk = json.loads(event[6:])
        assert chunk["usage"] is None and chunk["choices"][0]["delta"]["content"]
    tail = b"".join(chunks[5:]).split(b"\n\n")
    assert tail[-2:] == [b"data: [DONE]", b""]
    usage = json.loads(tail[-3][6:])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5


def test_without_include_usage_no_usage_field_is_sent(conn):
    conn.send(request("POST", "/v1/completions", {"model": "sim-model", "prompt": "x",
                                                   "max_tokens": 2, "stream": True}))
    _, _, chunks = conn.response()
    events = [json.loads(line[6:]) for line in b"".join(chunks).split(b"\n\n")
              if line.startswith(b"data: {")]
    assert all("usage" not in event for event in events)
    assert [e["choices"][0]["finish_reason"] for e in events] == [None, None, "length"]


def test_keep_alive_and_pipelined_requests_are_answered_in_order(conn, sim):
    conn.send(request("POST", "/v1/completions", {"model": "sim-model", "prompt": "x",
                                                   "max_tokens": 3, "stream": True},
                      headers="X-Request-Id: first\r\n")
              + request("GET", "/v1/models")
              + request("POST", "/api/generate", {"model": "sim-model", "prompt": "y",
                                                  "options": {"num_predict": 2}},
                        headers="X-Request-Id: third\r\n"))
    first, second, third = conn.response(), conn.response(), conn.response()
    assert first[0] == second[0] == third[0] == 200
    assert json.loads(second[2])["data"][0]["id"] == "sim-model"
    lines = [json.loads(line) for line in b"".join(third[2]).splitlines()]
    assert [line["done"] for line in lines] == [False, False, True]
    assert [r["client_request_id"] for r in sim.truth] == ["first", "third"]


def test_chunked_request_bodies_are_accepted(conn):
    body = json.dumps({"model": "sim-model", "prompt": "x", "max_tokens": 2}).encode()
    conn.send(b"POST /v1/completions HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:]))
    status, _, data = conn.response()
    assert status == 200 and json.loads(data)["usage"]["completion_tokens"] == 2


def test_expect_100_continue_is_answered_before_the_body(conn):
    body = json.dumps({"model": "sim-model", "prompt": "x", "max_tokens": 1}).encode()
    conn.send(b"POST /v1/completions HTTP/1.1\r\nHost: s\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    assert conn.file.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert conn.file.readline() == b"\r\n"
    conn.send(body)
    assert conn.response()[0] == 200


def test_a_client_that_stops_sending_still_gets_its_stream(conn):
    conn.send(request("POST", "/v1/completions", {"model": "sim-model", "prompt": "x",
                                                   "max_tokens": 3, "stream": True}))
    conn.sock.shutdown(socket.SHUT_WR)
    status, _, chunks = conn.response()
    assert status == 200 and chunks[-1].endswith(b"data: [DONE]\n\n")
    assert conn.file.read() == b""   # then the server closes its side too


def test_connection_close_is_honoured(conn):
    conn.send(request("GET", "/health", headers="Connection: close\r\n"))
    status, headers, _ = conn.response()
    assert status == 200 and headers["connection"] == "close"
    assert conn.file.read() == b""


@pytest.mark.parametrize("raw, status, word", [
    (b"NONSENSE\r\n\r\n", 400, "malformed"),
    (b"POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\n\r\n{oops", 400, "JSON"),
    (b"GET /nowhere HTTP/1.1\r\n\r\n", 404, "/nowhere"),
])
def test_bad_requests_get_a_clear_error(conn, raw, status, word):
    conn.send(raw)
    got, _, body = conn.response()
    assert got == status and word in body.decode()


def test_bad_fields_are_named_in_the_error(conn):
    conn.send(request("POST", "/v1/chat/completions", {"model": "sim-model", "messages": []}))
    status, _, body = conn.response()
    assert status == 400 and "messages" in json.loads(body)["error"]["message"]
    conn.send(request("POST", "/v1/completions", {"model": "sim-model", "prompt": "x", "n": 2}))
    status, _, body = conn.response()
    assert status == 400 and "'n'=2" in json.loads(body)["error"]["message"]
    conn.send(request("POST", "/api/generate", {"model": "sim-model", "prompt": "x",
                                                 "options": {"num_predict": "ten"}}))
    status, _, body = conn.response()
    assert status == 400 and "num_predict" in json.loads(body)["error"]
    conn.send(request("POST", "/v1/completions", {"model": "sim-model", "prompt": "x",
                                                   "max_tokens": 10**9}))
    status, _, body = conn.response()
    assert status == 400 and "kv-cache-tokens" in json.loads(body)["error"]["message"]


def test_ollama_root_health_and_version(conn):
    conn.send(request("GET", "/") + request("GET", "/health") + request("GET", "/api/version"))
    assert conn.response()[2] == b"Ollama is running"
    assert conn.response()[0] == 200
    assert "version" in json.loads(conn.response()[2])


def test_head_gets_the_get_head_without_a_body(conn):
    conn.send(request("HEAD", "/") + request("GET", "/api/version"))
    status, headers = conn.head()
    assert status == 200 and headers["content-length"] == str(len(b"Ollama is running"))
    assert conn.response()[0] == 200   # the next response follows at once: no body was sent


def test_ollama_empty_prompt_loads_the_model_without_generating(conn, sim):
    conn.send(request("POST", "/api/generate", {"model": "sim-model", "prompt": ""}))
    status, _, body = conn.response()
    assert status == 200 and json.loads(body)["done_reason"] == "load"
    assert sim.served == 0
