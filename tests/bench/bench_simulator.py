"""Simulator capacity: how many 16-token streams (tokens ~1 ms apart) it serves per CPU-second.

The simulator runs as its own process (`hpcbench sim --mode fixed --ttft-ms 1 --itl-ms 1`);
a raw asyncio load generator in another process keeps 64 streams busy back to back. Capacity =
completed requests / CPU seconds the server process used (so a second core used by the client
does not inflate it). The same load against a minimal aiohttp.web server with the same stream
shows why the simulator uses its own HTTP protocol. A short run with ground truth on reports how
exact fixed mode is at that full load (server-side ITL and TTFT percentiles; TTFT counts from the
kernel's receive stamp, so it includes the time a request waits for the saturated simulator).

Run alone: `.venv/bin/python tests/bench/run.py simulator`.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STREAMS = 64
TOKENS = 16
SECONDS = 5.0
BODY = json.dumps({"model": "sim-model", "prompt": "a b c d", "max_tokens": TOKENS,
                   "ignore_eos": True, "stream": True}).encode()
REQUEST = (b"POST /v1/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%b" % (len(BODY), BODY))

# No target: the issue sets none for the simulator; the figure says how much load one simulator
# process gives a client benchmark (more with `hpcbench sim --workers N`).


class StreamClient(asyncio.Protocol):
    """Sends a request, reads to the end of its chunked response, sends the next."""

    def __init__(self, done: list[int], stop_at: float) -> None:
        self.done, self.stop_at, self.tail = done, stop_at, b""
        self.finished = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.tail = (self.tail + data)[-16:]
        if self.tail.endswith(b"\r\n0\r\n\r\n"):
            self.done[0] += 1
            self.tail = b""
            if time.perf_counter() < self.stop_at:
                self.transport.write(REQUEST)
            else:
                self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


async def load(port: int, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    done = [0]
    stop_at = time.perf_counter() + seconds
    clients = [(await loop.create_connection(lambda: StreamClient(done, stop_at),
                                             "127.0.0.1", port))[1] for _ in range(STREAMS)]
    await asyncio.gather(*(client.finished for client in clients))
    return done[0]


def aiohttp_server(port_file: str) -> None:
    """The same stream from aiohttp.web (the comparison, not used by hpcbench)."""
    import uvloop
    from aiohttp import web

    chunk = (b'data: {"id":"cmpl-1","object":"text_completion","created":0,"model":"sim-model",'
             b'"choices":[{"index":0,"text":" token","logprobs":null,"finish_reason":null}]}\n\n')

    def token_gap() -> asyncio.Future:
        """Paces the stream like the simulator's fixed mode: a token every millisecond."""
        loop = asyncio.get_running_loop()
        gap = loop.create_future()
        loop.call_later(0.001, gap.set_result, None)
        return gap

    async def completions(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await token_gap()
        for _ in range(TOKENS):
            await response.write(chunk)
            await token_gap()
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(site._server.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    uvloop.run(main())


def measure(server_command: list[str], seconds: float = SECONDS) -> dict:
    """Start a server process, load it from a client process, return requests and server CPU."""
    import psutil
    with tempfile.TemporaryDirectory() as scratch:
        port_file = Path(scratch) / "port"
        server = subprocess.Popen([*server_command, str(port_file)],
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            pause = threading.Event()
            while not (port_file.exists() and port_file.read_text().strip()):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"server did not start: {server_command}")
                pause.wait(0.05)
            port = port_file.read_text().strip()
            process = psutil.Process(server.pid)
            before = process.cpu_times()
            started = time.perf_counter()
            client = subprocess.run([sys.executable, __file__, "client", port, str(seconds)],
                                    capture_output=True, text=True, check=True)
            elapsed = time.perf_counter() - started
            after = process.cpu_times()
        finally:
            server.kill()
            server.wait()
    completed = int(client.stdout)
    cpu = (after.user - before.user) + (after.system - before.system)
    return {"requests": completed, "req_per_s": completed / elapsed, "cpu_s": cpu,
            "kernel_share": (after.system - before.system) / cpu if cpu else 0.0,
            "req_per_cpu_s": completed / cpu if cpu else 0.0}


def truth_accuracy() -> dict:
    """Server-side ITL/TTFT of fixed mode (1 ms) under the same load, from ground truth."""
    import numpy as np
    with tempfile.TemporaryDirectory() as scratch:
        truth = Path(scratch) / "truth.jsonl"
        measure(sim_command(["--truth", str(truth)]), seconds=2.0)
        records = [json.loads(line) for line in truth.read_text().splitlines()]
    served = [r for r in records if r["outcome"] == "served"]
    gaps = np.concatenate([np.diff(r["token_perf_ns"]) for r in served]) / 1e6
    ttft = np.array([r["token_perf_ns"][0] - r["arrival_perf_ns"] for r in served]) / 1e6
    return {"fixed_itl_ms_p50": round(float(np.percentile(gaps, 50)), 3),
            "fixed_itl_ms_p99": round(float(np.percentile(gaps, 99)), 3),
            "fixed_ttft_ms_p50": round(float(np.percentile(ttft, 50)), 3),
            "fixed_ttft_ms_p99": round(float(np.percentile(ttft, 99)), 3)}


def sim_command(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "hpcbench.coordinator.cli.main", "sim", "--mode", "fixed",
            "--ttft-ms", "1", "--itl-ms", "1", "--port", "0", *extra, "--port-file"]


def run() -> dict:
    sim = measure(sim_command([]))
    aio = measure([sys.executable, __file__, "aiohttp-server"])
    return {"sim_capacity_req_per_cpu_s": round(sim["req_per_cpu_s"]),
            "sim_achieved_req_per_s": round(sim["req_per_s"]),
            "sim_cpu_us_per_token": round(sim["cpu_s"] / max(1, sim["requests"] * TOKENS) * 1e6, 2),
            "sim_cpu_kernel_share": round(sim["kernel_share"], 2),
            "aiohttp_capacity_req_per_cpu_s": round(aio["req_per_cpu_s"]),
            "aiohttp_achieved_req_per_s": round(aio["req_per_s"]),
            "streams": STREAMS, "tokens_per_request": TOKENS, "cpu_count": os.cpu_count(),
            **truth_accuracy()}


if __name__ == "__main__":
    if sys.argv[1] == "client":
        import uvloop
        print(uvloop.run(load(int(sys.argv[2]), float(sys.argv[3]))))
    elif sys.argv[1] == "aiohttp-server":
        aiohttp_server(sys.argv[2])
