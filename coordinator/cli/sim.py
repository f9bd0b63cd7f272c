"""`hpcbench sim`: run the built-in inference simulator (OpenAI and Ollama APIs) in the foreground.

Every `SimulatorConfig` field is a flag (`--ttft-ms`, `--error-rate`, ...); `--port-file F`
receives the bound port once the server listens (so `--port 0` is usable from scripts and tests),
`--truth F` receives one JSON line of ground truth per request, `--workers N` runs N processes
on the port.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

HELP = "Start the built-in inference simulator (OpenAI and Ollama APIs)"

# flag help per SimulatorConfig field; the flag is the field name with dashes
FIELD_HELP = {
    "host": "address to listen on (default 127.0.0.1)",
    "port": "TCP port; 0 picks a free one (see --port-file)",
    "model": "model name served (OpenAI /v1/models, Ollama /api/tags)",
    "seed": "seed for output lengths, token texts and fault draws",
    "mode": "timing: 'model' (prefill + batch-dependent decode, queueing) or 'fixed'",
    "ttft_ms": "fixed mode: time to first token after arrival",
    "itl_ms": "fixed mode: time between tokens",
    "prefill_base_ms": "model mode: fixed prefill cost",
    "prefill_ms_per_token": "model mode: prefill cost per prompt token",
    "decode_base_ms": "model mode: decode step time with an empty batch",
    "decode_ms_per_seq": "model mode: extra decode step time per running sequence",
    "max_num_seqs": "model mode: concurrent sequences; more requests wait in a queue",
    "kv_cache_tokens": "KV-cache size in tokens (for vllm:kv_cache_usage_perc)",
    "default_max_tokens": "output length when a request sets no max_tokens/num_predict",
    "stop_probability": "per-token chance to stop early (requests without ignore_eos)",
    "reasoning_fraction": "fraction (0..1) of each chat answer's tokens sent first as reasoning "
                          "content",
    "reasoning_field": "OpenAI delta field of reasoning tokens: reasoning (vLLM >= 0.10) or "
                       "reasoning_content",
    "prefix_caching": "model mode: reuse the KV cache of prompt prefixes seen before (prefill "
                      "cost only for uncached tokens)",
    "prefix_cache_tokens": "with --prefix-caching: tokens the prefix cache holds (LRU eviction)",
    "prefix_block_tokens": "with --prefix-caching: tokens per cache block (only whole blocks "
                           "are cached, as in vLLM)",
    "error_rate": "fraction of generation requests answered with --error-status",
    "error_status": "HTTP status of injected errors: 500, 429 or 503",
    "stall_ms": "stall each affected stream this long before token --stall-at-token",
    "stall_at_token": "token number (1-based) that comes late by --stall-ms",
    "stall_rate": "fraction of streams that stall (with --stall-ms)",
    "disconnect_rate": "fraction of streams cut after token --disconnect-at-token",
    "disconnect_at_token": "token number after which an affected stream is cut",
    "no_token_rate": "fraction of requests answered HTTP 200 without any token",
    "not_ready_s": "answer 503 (health and requests) for this many seconds after start",
    "pause_at_s": "with --pause-ms: seconds after the first generation request when the whole "
                  "server freezes",
    "pause_ms": "freeze the whole server (event loop blocked) this long",
    "record_truth": "record ground truth (implied by --truth)",
    "extra_models": "further model names to serve (repeat the flag)",
}


def configure(parser: argparse.ArgumentParser) -> None:
    from hpcbench.servers.simulator.config import SimulatorConfig
    for spec in fields(SimulatorConfig):
        flag = "--" + spec.name.replace("_", "-")
        default = spec.default if spec.default is not MISSING else None
        if spec.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=FIELD_HELP[spec.name])
        elif spec.name == "extra_models":
            parser.add_argument("--extra-model", "--extra-models", dest="extra_models",
                                action="append",
                                default=[], metavar="NAME", help=FIELD_HELP[spec.name])
        else:
            kind = {"int": int, "float": float}.get(str(spec.type), str)
            parser.add_argument(flag, type=kind, default=default,
                                help=f"{FIELD_HELP[spec.name]} (default: {default})")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes sharing the port, each an independent replica with "
                             "its own batch and queue; metrics and truth cover all (default: 1)")
    parser.add_argument("--port-file", metavar="FILE",
                        help="write the bound port here once listening (atomic)")
    parser.add_argument("--truth", metavar="FILE",
                        help="append one JSON line of ground truth per request to FILE")


def run(args: argparse.Namespace) -> int:
    from hpcbench.common.errors import config_error
    from hpcbench.common.limits import MAX_PER_NODE
    from hpcbench.servers.simulator import SimulatorConfig, serve
    values = {spec.name: getattr(args, spec.name) for spec in fields(SimulatorConfig)}
    config = SimulatorConfig(**values)
    if not 1 <= args.workers <= MAX_PER_NODE:   # each one is a process
        raise config_error(f"--workers {args.workers}: expected an integer from 1 to "
                           f"{MAX_PER_NODE}")
    serve(config, port_file=args.port_file, truth_file=args.truth, workers=args.workers)
    return 0
