"""Wait until a Ray cluster has N alive nodes; exit 0, or 1 with a message naming who is missing.

Standalone on purpose (imports only `ray`): it runs with the Python that has Ray, which under
Apptainer is the one inside the service image (hpcbench passes this file's text via `python -c`).
Usage: python ray_wait.py HEAD_IP:PORT EXPECTED_NODES TIMEOUT_S
"""
import sys
import threading
import time


def main(address: str, expected: int, timeout_s: float) -> int:
    import ray

    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        while True:
            alive = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
            if len(alive) >= expected:
                print(f"ray cluster ready: {len(alive)} nodes alive ({', '.join(alive)})",
                      flush=True)
                return 0
            if time.monotonic() >= deadline:
                print(f"error E001: only {len(alive)} of {expected} Ray nodes alive at {address} "
                      f"after {timeout_s:g}s (alive: {', '.join(alive) or 'none'}); fix: check "
                      "the worker nodes' logs (ray start --address) and that their Ray ports "
                      "are reachable, or raise servers.health_check.timeout",
                      file=sys.stderr, flush=True)
                return 1
            pause.wait(0.5)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
