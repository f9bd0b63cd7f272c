"""Timing model, determinism, ground truth and /metrics of the simulator.

Timings are checked against the simulator's own ground truth (server-side write times) and as
lower bounds the model guarantees (a token is never written early), never as wall-clock speeds.
"""
import fcntl
import json
import socket
import struct
import termios
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from hpcbench.servers.simulator import SimulatorConfig, start_simulator
from tests.support.waiting import wait_until


def post(url: str, body: dict, timeout: float = 30) -> dict | list:
    data = urllib.request.urlopen(urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}),
        timeout=timeout).read()
    if data.startswith(b"data:"):
        return [line for line in data.split(b"\n\n") if line]
    if b"\n{" in data:
        return [json.loads(line) for line in data.splitlines()]
    return json.loads(data)


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def complete(url: str, prompt: str = "a b c", max_tokens: int = 4, **extra) -> dict:
    return post(url + "/v1/completions", {"model": "sim-model", "prompt": prompt,
                                           "max_tokens": max_tokens, **extra})


def gaps_ms(record: dict) -> list[float]:
    times = record["token_perf_ns"]
    return [(b - a) / 1e6 for a, b in zip(times, times[1:])]


def ttft_ms(record: dict) -> float:
    return (record["token_perf_ns"][0] - record["arrival_perf_ns"]) / 1e6


def run_concurrently(count: int, work) -> list:
    results = [None] * count

    def one(i):
        results[i] = work(i)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_fixed_mode_never_writes_a_token_early():
    with start_simulator(mode="fixed", ttft_ms=15, itl_ms=4, record_truth=True) as sim:
        complete(sim.url, max_tokens=6)
        record, = sim.truth
    assert record["outcome"] == "served" and len(record["token_perf_ns"]) == 6
    assert ttft_ms(record) >= 15
    assert all(gap >= 4 for gap in gaps_ms(record))
    assert record["token_time_ns"] == sorted(record["token_time_ns"])


def test_prefill_cost_grows_with_prompt_length():
    config = SimulatorConfig(prefill_base_ms=1, prefill_ms_per_token=2, decode_base_ms=1,
                             record_truth=True)
    with start_simulator(config) as sim:
        complete(sim.url, prompt="word " * 50, max_tokens=1)
        long_prompt, = sim.truth
    assert ttft_ms(long_prompt) >= 1 + 2 * 50


def test_decode_is_slower_with_a_bigger_running_batch():
    config = SimulatorConfig(decode_base_ms=1, decode_ms_per_seq=3, prefill_base_ms=0,
                             prefill_ms_per_token=0, record_truth=True)
    with start_simulator(config) as sim:
        complete(sim.url, max_tokens=8)
        alone = sum(gaps_ms(sim.truth[0])) / 7
        run_concurrently(12, lambda i: complete(sim.url, prompt=f"p{i}", max_tokens=8))
        batched = [sum(gaps_ms(r)) / 7 for r in sim.truth[1:]]
    # alone: one step = 1 + 3*1 ms; batched: up to 12 running, so steps grow to 1 + 3*12 ms
    assert alone >= 4
    assert max(batched) > 2 * alone


def test_requests_beyond_max_num_seqs_wait_in_a_queue():
    config = SimulatorConfig(max_num_seqs=2, decode_base_ms=100, record_truth=True)
    with start_simulator(config) as sim:
        done = []
        threads = [threading.Thread(target=lambda i=i: done.append(
            complete(sim.url, prompt=f"q{i}", max_tokens=5))) for i in range(4)]
        for thread in threads:
            thread.start()
        seen = wait_until(lambda: (m := metrics(sim.url))[
            'vllm:num_requests_waiting{model_name="sim-model"}'] == 2 and m, timeout=20,
            what="two waiting requests")
        assert seen['vllm:num_requests_running{model_name="sim-model"}'] == 2
        assert seen['vllm:kv_cache_usage_perc{model_name="sim-model"}'] > 0
        for thread in threads:
            thread.join(30)
        records = sorted(sim.truth, key=lambda r: r["token_perf_ns"][0])
    assert len(done) == 4
    finished_first = sorted(r["token_perf_ns"][-1] for r in records[:2])
    # a queued request starts only after a running one has finished
    assert records[2]["token_perf_ns"][0] > finished_first[0]
    assert records[3]["token_perf_ns"][0] > finished_first[1]


def test_output_length_and_text_are_deterministic_by_seed():
    def lengths_and_texts(seed):
        config = SimulatorConfig(seed=seed, mode="fixed", ttft_ms=0, itl_ms=0,
                                 stop_probability=0.2)
        with start_simulator(config) as sim:
            return [(r["usage"]["completion_tokens"], r["choices"][0]["text"])
                    for r in (complete(sim.url, prompt=f"prompt {i}", max_tokens=30)
                              for i in range(8))]
    first, again, other = lengths_and_texts(7), lengths_and_texts(7), lengths_and_texts(8)
    assert first == again
    assert first != other
    assert any(n < 30 for n, _ in first)          # some stopped early, deterministically


def test_ignore_eos_always_gives_max_tokens():
    with start_simulator(mode="fixed", ttft_ms=0, itl_ms=0, stop_probability=0.5) as sim:
        replies = [complete(sim.url, prompt=f"x{i}", max_tokens=12, ignore_eos=True)
                   for i in range(5)]
    assert [r["usage"]["completion_tokens"] for r in replies] == [12] * 5
    assert {r["choices"][0]["finish_reason"] for r in replies} == {"length"}


def test_metrics_count_exactly_what_was_served():
    with start_simulator(mode="fixed", ttft_ms=1, itl_ms=1) as sim:
        for _i in range(3):
            complete(sim.url, prompt="a b", max_tokens=4)
        post(sim.url + "/api/generate", {"model": "sim-model", "prompt": "a b c",
                                          "options": {"num_predict": 2}, "stream": False})
        m = metrics(sim.url)
        stats = json.loads(urllib.request.urlopen(sim.url + "/sim/stats").read())
    label = 'model_name="sim-model"'
    assert m[f'vllm:request_success_total{{{label},finished_reason="length"}}'] == 4
    assert m[f"hpcbench_sim_requests_served_total{{{label}}}"] == 4 == stats["served"]
    assert m[f"vllm:generation_tokens_total{{{label}}}"] == 3 * 4 + 2
    assert m[f"vllm:prompt_tokens_total{{{label}}}"] == 3 * 2 + 3
    assert m[f'vllm:time_to_first_token_seconds_count{{{label}}}'] == 4
    assert m[f'vllm:inter_token_latency_seconds_count{{{label}}}'] == 3 * 3 + 1
    assert m[f'vllm:e2e_request_latency_seconds_bucket{{{label},le="+Inf"}}'] == 4
    # per finished prompt, under vLLM's current names
    for name in ("request_time_per_output_token", "request_queue_time", "request_prefill_time",
                 "request_decode_time"):
        assert m[f'vllm:{name}_seconds_count{{{label}}}'] == 4, name


def test_queue_and_prefill_add_up_to_the_servers_ttft():
    """One batch slot, four concurrent prompts: three wait for it. Every prompt's TTFT is its
    queue time plus its prefill time, so the histograms' sums agree, and some waited."""
    with start_simulator(mode="model", max_num_seqs=1, prefill_base_ms=100,
                         prefill_ms_per_token=0, decode_base_ms=1, decode_ms_per_seq=0) as sim:
        threads = [threading.Thread(target=complete, args=(sim.url,),
                                    kwargs={"prompt": f"q{i}", "max_tokens": 3})
                   for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        m = metrics(sim.url)
    label = 'model_name="sim-model"'

    def total(name: str) -> float:
        return m[f"vllm:{name}_seconds_sum{{{label}}}"]

    assert m[f"vllm:request_queue_time_seconds_count{{{label}}}"] == 4
    assert total("time_to_first_token") == pytest.approx(
        total("request_queue_time") + total("request_prefill_time"), rel=1e-9)
    assert total("request_queue_time") > 0


def test_metrics_are_valid_prometheus_text():
    from prometheus_client.parser import text_string_to_metric_families
    with start_simulator(mode="fixed", ttft_ms=1, itl_ms=1, error_rate=0.5) as sim:
        for i in range(6):
            try:
                complete(sim.url, prompt=f"p{i}", max_tokens=3)
            except urllib.error.HTTPError as error:
                assert error.code == 500
        text = urllib.request.urlopen(sim.url + "/metrics", timeout=10).read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["vllm:time_to_first_token_seconds"].type == "histogram"
    assert families["vllm:num_requests_running"].type == "gauge"
    served = families["hpcbench_sim_requests_served"].samples[0].value
    faults = families["hpcbench_sim_faults"].samples[0]
    assert faults.labels["kind"] == "error" and served + faults.value == 6


def test_truth_has_one_record_per_request_with_each_token_write():
    with start_simulator(mode="fixed", ttft_ms=1, itl_ms=1, record_truth=True) as sim:
        with openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0) as client:
            stream = client.chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": "hi"}], max_tokens=9,
                stream=True, extra_headers={"X-Request-Id": "r-1"})
            ids = {chunk.id for chunk in stream}
        record, = sim.truth
        assert sim.served == 1
    assert record["id"] in ids and record["client_request_id"] == "r-1"
    assert record["api"] == "openai-chat" and record["completion_tokens"] == 9
    assert len(record["token_perf_ns"]) == len(record["token_time_ns"]) == 9
    assert record["arrival_perf_ns"] < record["token_perf_ns"][0]


def unacknowledged_bytes(sock: socket.socket) -> int:
    """Bytes this socket sent that the peer's kernel has not acknowledged yet (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0" * 4))[0]


def test_a_request_waiting_for_a_busy_server_arrived_when_its_bytes_did():
    """Truth's arrival is the kernel's receive stamp: a request that sat in the socket buffer
    while the server's loop was busy counts that wait as server time, not client time."""
    with start_simulator(mode="fixed", ttft_ms=0, itl_ms=0, record_truth=True) as sim:
        busy, release = threading.Event(), threading.Event()
        blocker = threading.Thread(target=sim.on_loop,
                                   args=(lambda: busy.set() or release.wait(30),))
        blocker.start()
        assert busy.wait(30)   # from here the simulator cannot read anything
        with socket.create_connection(("127.0.0.1", sim.port), timeout=30) as client:
            body = json.dumps({"model": "sim-model", "prompt": "a", "max_tokens": 2}).encode()
            client.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: sim\r\nConnection: close"
                           b"\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            wait_until(lambda: unacknowledged_bytes(client) == 0,
                       what="the server's kernel to acknowledge the request")
            received_by_kernel = time.perf_counter_ns()
            release.set()
            answer = b"".join(iter(lambda: client.recv(65536), b""))
        blocker.join(30)
        record, = sim.truth
    assert answer.startswith(b"HTTP/1.1 200")
    assert record["arrival_perf_ns"] <= received_by_kernel < record["token_perf_ns"][0]


def test_a_pipelined_request_arrives_with_its_own_bytes_not_the_previous_request_s():
    """Request 1 comes in two packets, the second also carrying all of request 2: request 2
    arrived with that second packet, not with request 1's first one. (Request 1 may carry
    either stamp: a read that takes several packets at once has the latest one's stamp.)"""
    def request(prompt: str, close: bool = False) -> bytes:
        body = json.dumps({"model": "sim-model", "prompt": prompt, "max_tokens": 1}).encode()
        return (b"POST /v1/completions HTTP/1.1\r\nHost: sim\r\n%bContent-Length: %d\r\n\r\n%b"
                % (b"Connection: close\r\n" if close else b"", len(body), body))
    first, second = request("one"), request("two", close=True)
    with start_simulator(mode="fixed", ttft_ms=0, itl_ms=0, record_truth=True) as sim:
        with socket.create_connection(("127.0.0.1", sim.port), timeout=30) as client:
            client.sendall(first[:20])
            wait_until(lambda: unacknowledged_bytes(client) == 0,
                       what="the server's kernel to acknowledge the first packet")
            between = time.perf_counter_ns()
            client.sendall(first[20:] + second)
            answer = b"".join(iter(lambda: client.recv(65536), b""))
        records = sorted(sim.truth, key=lambda record: record["token_perf_ns"][0])
    assert answer.count(b"HTTP/1.1 200") == 2
    assert records[0]["arrival_perf_ns"] <= records[1]["arrival_perf_ns"]
    assert between < records[1]["arrival_perf_ns"]


def test_a_client_that_goes_away_frees_its_batch_slot():
    with start_simulator(mode="fixed", ttft_ms=1, itl_ms=20, record_truth=True) as sim:
        response = urllib.request.urlopen(urllib.request.Request(
            sim.url + "/v1/completions", data=json.dumps(
                {"model": "sim-model", "prompt": "x", "max_tokens": 1000,
                 "stream": True}).encode()), timeout=10)
        response.readline()
        wait_until(lambda: sim.stats()["running"] == 1 and sim.stats()["generation_tokens"] > 0,
                   what="the stream to start")
        response.close()
        wait_until(lambda: sim.stats()["cancelled"] == 1, what="the server to notice")
        assert sim.served == 0 and sim.truth[0]["outcome"] == "cancelled"


def test_the_portable_alarm_also_never_writes_early(monkeypatch):
    from hpcbench.common import alarm
    from hpcbench.servers.simulator import engine
    monkeypatch.setattr(engine, "make_alarm", alarm.LoopAlarm)
    with start_simulator(mode="fixed", ttft_ms=3, itl_ms=2, record_truth=True) as sim:
        complete(sim.url, max_tokens=5)
        record, = sim.truth
    assert ttft_ms(record) >= 3 and all(gap >= 2 for gap in gaps_ms(record))


def test_bad_configuration_names_the_field():
    from hpcbench.common.errors import HpcbenchError
    with pytest.raises(HpcbenchError) as caught:
        SimulatorConfig(error_rate=1.5)
    assert caught.value.code == "E006" and "error_rate=1.5" in caught.value.message
    with pytest.raises(HpcbenchError, match="mode='turbo'"):
        SimulatorConfig(mode="turbo")
