"""A sample PULL socket in its own process, for benches that push batches at it: the receiving
side's CPU must not count as the sender's. `python sample_receiver.py ipc|curve|tcp KEYS_DIR`
binds, prints its endpoint, drains until stdin closes, then prints the messages it took."""
from __future__ import annotations

import sys
import tempfile
import threading

import zmq

from hpcbench.common import sockets
from hpcbench.common.curve import load_keys


def main(mode: str, keys_dir: str) -> None:
    curve = load_keys(keys_dir) if mode == "curve" else None
    endpoint = (f"ipc://{tempfile.mkdtemp(prefix='bench-')}/samples" if mode == "ipc"
                else "tcp://127.0.0.1:0")
    pull, bound = sockets.bind(zmq.PULL, endpoint, hwm=1000, curve=curve)
    print(bound, flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    received = 0
    while not done.is_set() or pull.poll(0):
        if pull.poll(100):
            pull.recv()
            received += 1
    print(received, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
