"""`hpcbench-executor`: run load against one target alone, or serve a coordinator.

Standalone: the flags build the same workload dict a recipe trial resolves to, so a standalone
run and a coordinated run share every code path (`LoadConfig.from_workload`, `run_trial`):

    hpcbench-executor --target http://127.0.0.1:8000 --api openai-chat --model M \\
        --concurrency 8 --duration 10s --out samples.bin

writes length-prefixed sample batches (read them with `hpcbench.executor.sinks.read_batches`)
and prints a JSON summary. `--push tcp://HOST:PORT` streams the batches to a PULL socket instead.
With `--coordinator ADDRESS` the executor registers with a coordinator and waits for its
commands (`hpcbench.executor.agent`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.common.logs import configure_logging
from hpcbench.executor.config import DATASET_KINDS, PATTERNS
from hpcbench.executor.protocol_registry import known_protocols

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcbench-executor",
        description="hpcbench load generator: streamed LLM requests, exact per-request samples")
    parser.add_argument("--coordinator", metavar="ADDRESS",
                        help="serve this coordinator (host:port) instead of running alone")
    target = parser.add_argument_group("target")
    target.add_argument("--target", metavar="URL", action="append",
                        help="base URL, e.g. http://127.0.0.1:8000; repeat it to send the "
                             "requests to several servers in turn")
    target.add_argument("--api", choices=known_protocols(), default="openai-chat",
                        help="the wire protocol (built-ins and installed plugins)")
    target.add_argument("--model", help="model name sent in every request")
    target.add_argument("--no-stream", dest="stream", action="store_false", default=None,
                        help="ask for whole responses instead of streams (the default of an "
                             "api that does not stream)")
    target.add_argument("--api-config", metavar="JSON",
                        help="the api's configuration as a JSON object (workload.api_config)")
    load = parser.add_argument_group("load")
    load.add_argument("--pattern", choices=PATTERNS, default=None,
                      help="default: closed, or poisson when --rate is given")
    load.add_argument("--concurrency", type=int, default=1, help="closed-loop slots")
    load.add_argument("--rate", type=float, help="open loop: requests per second")
    load.add_argument("--burstiness", type=float, default=1.0, help="gamma shape (1 = Poisson)")
    load.add_argument("--burst-size", type=int, help="burst pattern: requests per burst")
    load.add_argument("--burst-pause", help="burst pattern: time between bursts, e.g. 2s")
    load.add_argument("--trace", metavar="JSONL", help="trace pattern: {\"timestamp\": s} lines")
    load.add_argument("--ramp-up", default="0", help="rate/slots grow over this time")
    load.add_argument("--duration", default="10s", help="measured window, e.g. 30s; 0: none")
    load.add_argument("--warmup", default="0", help="warmup before the measured window")
    load.add_argument("--max-requests", type=int, help="stop after this many measured requests")
    load.add_argument("--timeout", default="60s", help="per-request timeout")
    data = parser.add_argument_group("dataset")
    data.add_argument("--dataset", choices=DATASET_KINDS, default="synthetic")
    data.add_argument("--dataset-path", help="file for sharegpt / jsonl datasets")
    data.add_argument("--input-tokens", type=int, default=128, help="synthetic prompt length")
    data.add_argument("--output-tokens", type=int, help="max tokens asked per request")
    data.add_argument("--ignore-eos", action="store_true", help="ask for exactly max tokens")
    data.add_argument("--batch", type=int, default=1,
                      help="prompts per request (openai-completions prompt list)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--conversation", metavar="JSON",
                      help="multi-turn conversations as a JSON object (workload.conversation), "
                           "e.g. '{\"turns\": 3, \"think_time\": \"1s\"}'")
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="FILE", help="write sample batches to this file")
    out.add_argument("--push", metavar="ENDPOINT", help="PUSH sample batches to a ZeroMQ PULL")
    out.add_argument("--run-id", default="standalone")
    out.add_argument("--executor-id", help="default: executor-0 (with --coordinator: "
                     "$HPCBENCH_AGENT_ID or one the coordinator assigns)")
    out.add_argument("--node", help="node name in the samples (default: $SLURMD_NODENAME, "
                     "else localhost)")
    return parser


def workload_from_args(args: argparse.Namespace) -> dict:
    """The recipe-shaped workload dict the flags stand for."""
    pattern = args.pattern or ("poisson" if args.rate else "closed")
    output = args.output_tokens
    return {
        "api": args.api, "model": args.model, "stream": args.stream,
        "api_config": _json_object(args.api_config, "--api-config"),
        "duration": args.duration, "warmup": args.warmup, "max_requests": args.max_requests,
        "request_timeout": args.timeout, "concurrency": args.concurrency, "batch": args.batch,
        "load": {"pattern": pattern, "rate": args.rate, "burstiness": args.burstiness,
                 "burst_size": args.burst_size, "burst_pause": args.burst_pause,
                 "trace": args.trace, "ramp_up": args.ramp_up},
        "dataset": {"kind": args.dataset, "path": args.dataset_path,
                    "input_tokens": {"distribution": "fixed", "mean": args.input_tokens},
                    "output_tokens": None if output is None else
                    {"distribution": "fixed", "mean": output},
                    "ignore_eos": args.ignore_eos, "seed": args.seed},
        "conversation": _json_object(args.conversation, "--conversation"),
    }


def _json_object(text: str | None, flag: str) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise config_error(f"{flag} {text!r} is not JSON: {error}",
                           [f"fix: give a JSON object, e.g. {flag} '{{\"key\": 1}}'"]) from None
    if not isinstance(value, dict):
        raise config_error(f"{flag} {text!r} is not a JSON object",
                           [f"fix: give a JSON object, e.g. {flag} '{{\"key\": 1}}'"])
    return value


def run_standalone(args: argparse.Namespace) -> int:
    import uvloop

    from hpcbench.executor.config import LoadConfig
    from hpcbench.executor.engine import run_trial
    from hpcbench.executor.sinks import FileSink, MemorySink, ZmqSink, read_batches
    from hpcbench.executor.summary import summarize

    if not args.target or not args.model:
        raise config_error("--target URL and --model NAME are required (or give --coordinator)")
    workload = workload_from_args(args)
    config = LoadConfig.from_workload(
        workload, args.target, run_id=args.run_id, executor_id=args.executor_id or "executor-0",
        node=args.node or os.environ.get("SLURMD_NODENAME", "localhost"))
    sink = (FileSink(args.out) if args.out else ZmqSink(args.push) if args.push
            else MemorySink())
    try:
        stats = uvloop.run(run_trial(config, sink))
    finally:
        sink.close()
    batches = read_batches(args.out) if args.out else getattr(sink, "batches", [])
    summary = summarize(batches, stats.measured_seconds or None) if not args.push else {}
    summary.update(batches=stats.batches, stopped=stats.stopped,
                   max_dispatch_lag_ms=round(stats.max_dispatch_lag_ms, 3),
                   kernel_stamps=stats.kernel_stamps)
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging("hpcbench-executor")
    args = build_parser().parse_args(argv)
    try:
        if args.coordinator:
            try:
                from hpcbench.executor import agent
            except ModuleNotFoundError as error:
                if error.name != "hpcbench.executor.agent":
                    raise
                raise config_error("--coordinator needs hpcbench.executor.agent, which this "
                                   "installation lacks; run standalone with --target") from None
            return agent.main(args)
        return run_standalone(args)
    except HpcbenchError as error:
        log.error(error.render())
        return error.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
