"""Stand-in for `vllm serve --distributed-executor-backend ray` (a TEST DOUBLE, named so).

Real vLLM needs GPUs to spread a model over Ray nodes; this stand-in does the part hpcbench is
responsible for: it joins the Ray cluster at RAY_ADDRESS exactly as vLLM does, fails unless the
cluster has HPCBENCH_STANDIN_EXPECT_NODES alive nodes, writes what it saw to
HPCBENCH_STANDIN_REPORT (JSON), then answers /health and /v1/models on --host/--port like vLLM.
It accepts (and ignores) every other vLLM argument, so the plugin's real command line reaches it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model")
    parser.add_argument("--served-model-name")
    parser.add_argument("--distributed-executor-backend")
    args, _ignored = parser.parse_known_args()

    import ray

    ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR", log_to_driver=False)
    alive = sorted(node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"])
    ray.shutdown()
    expected = int(os.environ["HPCBENCH_STANDIN_EXPECT_NODES"])
    report = {"alive": alive, "expected": expected, "backend": args.distributed_executor_backend,
              "vllm_host_ip": os.environ.get("VLLM_HOST_IP"), "host": args.host}
    with open(os.environ["HPCBENCH_STANDIN_REPORT"], "w") as out:
        json.dump(report, out)
    if len(alive) != expected:
        print(f"standin_vllm: Ray cluster has {len(alive)} nodes, expected {expected}",
              file=sys.stderr)
        return 3
    model = args.served_model_name or args.model

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

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
