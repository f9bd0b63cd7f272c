"""Synthetic executors for the scale bench: one process replays one executor's stream as N.

`python scale_executors.py ENDPOINT MODE FIRST COUNT SECONDS PACED`
builds one second of a busy executor's output once (5,000 requests of 16-token streams, as
`make_batch` makes them), in MODE raw (the sample batch) or histograms (its summary,
hpcbench.common.measure.summaries), then for each of SECONDS seconds sends it as executors
exec-FIRST .. exec-(FIRST+COUNT-1), each message packed anew with its own executor id and
sequence number, over a real PUSH socket. PACED 1 keeps one message per executor per second
(a live fleet); 0 sends as fast as the socket takes them (to measure the receiver's cost per
message). It prints "ready" once its message is built and its socket connected, starts when
a line arrives on stdin (so the bench clock starts with every generator), and prints the
messages sent.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hpcbench.common import sockets  # noqa: E402
from hpcbench.common.measure.buckets import HistogramConfig  # noqa: E402
from hpcbench.common.measure.summaries import summarise  # noqa: E402
from hpcbench.proto import samples  # noqa: E402
from tests.support.sample_batches import make_batch  # noqa: E402

REQUESTS_PER_S, TOKENS = 5_000, 16
SLOS_NS = {"ttft": 500_000_000, "tpot": 50_000_000}


def one_second(mode: str) -> dict:
    """The unpacked message one executor sends for one second of its stream."""
    batch = make_batch(0, REQUESTS_PER_S, run="run-1", chunks=TOKENS,
                       spacing_ns=1_000_000_000 // REQUESTS_PER_S)
    payload = samples.encode(batch) if mode == "raw" else \
        samples.encode_summary(summarise(batch, HistogramConfig(), SLOS_NS))
    return msgpack.unpackb(payload, raw=False)


def main(endpoint: str, mode: str, first: int, count: int, seconds: int, paced: bool) -> None:
    message = one_second(mode)
    push = sockets.connect(zmq.PUSH, endpoint, hwm=1000, linger_ms=120_000)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    schedule = threading.Event()   # never set: its wait() is the fleet's once-a-second clock
    sent = 0
    for second in range(seconds):
        if paced:    # a fleet sends once a second: wait for this second's turn
            schedule.wait(max(started + second - time.monotonic(), 0))
        message["seq"] = second
        for index in range(first, first + count):
            message["executor"] = f"exec-{index}"
            push.send(msgpack.packb(message, use_bin_type=True))
            sent += 1
    push.close()
    zmq.Context.instance().term()   # returns once every queued message reached the receiver
    print(sent, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
         sys.argv[6] == "1")
