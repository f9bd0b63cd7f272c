"""Push one realistic sample batch N times at an endpoint from its own process, so the bench
that receives them counts only the receiving side's CPU.
`python sample_sender.py ENDPOINT N [KEYS_DIR]` (KEYS_DIR: connect with CURVE)."""
from __future__ import annotations

import sys
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hpcbench.common import sockets  # noqa: E402
from hpcbench.common.curve import load_keys  # noqa: E402
from hpcbench.proto.samples import encode  # noqa: E402
from tests.support.sample_batches import make_batch  # noqa: E402


def main(endpoint: str, count: int, keys_dir: str | None) -> None:
    payload = encode(make_batch(0, 1_000, chunks=16))
    push = sockets.connect(zmq.PUSH, endpoint, hwm=1000, linger_ms=60_000,
                           curve=load_keys(keys_dir) if keys_dir else None)
    for _ in range(count):
        push.send(payload)
    push.close()
    zmq.Context.instance().term()   # returns once every queued batch reached the receiver


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
