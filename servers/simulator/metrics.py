"""Server-side statistics of the simulator, rendered as Prometheus text with vLLM's names.

Counters and histograms are plain Python numbers updated on the event loop (no locks, no
prometheus_client objects on the hot path); `render()` formats them on each /metrics scrape.
Histogram buckets follow vLLM's, so dashboards built for vLLM work against the simulator.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


class Histogram:
    """Cumulative-on-render Prometheus histogram: per-bucket counts, sum and count."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, "+Inf"), self.counts):
            running += count
            out.append(f'{name}_bucket{{{labels},le="{bound}"}} {running}')
        out.append(f"{name}_sum{{{labels}}} {self.total}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


class ServerStats:
    """Everything /metrics and /sim/stats report; the engine and API handlers update it."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.running = 0
        self.waiting = 0
        self.kv_tokens = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.served = 0                     # generation requests answered completely
        self.finished = Counter()           # finished_reason -> count (served ones)
        self.faults = Counter()             # injected fault kind -> count
        self.cancelled = 0                  # client went away before the end
        self.prefix_cache_queries = 0       # prompt tokens looked up in the prefix cache
        self.prefix_cache_hits = 0          # of those, tokens found (no prefill needed)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.tpot = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        # per finished prompt, as vLLM: waiting for a batch slot, prefill, decode (seconds)
        self.queue = Histogram(E2E_BUCKETS)
        self.prefill = Histogram(E2E_BUCKETS)
        self.decode = Histogram(E2E_BUCKETS)

    # --- flat form, for summing the stats of several worker processes ---------------------
    SCALARS = ("running", "waiting", "kv_tokens", "prompt_tokens", "generation_tokens", "served",
               "cancelled", "prefix_cache_queries", "prefix_cache_hits")
    REASONS = ("length", "stop")
    FAULTS = ("error", "disconnect", "no_token")
    HISTOGRAMS = ("ttft", "itl", "tpot", "e2e", "queue", "prefill", "decode")

    def vector(self) -> list[float]:
        """All counters as one flat list (layout fixed by the class constants above)."""
        values = [getattr(self, name) for name in self.SCALARS]
        values += [self.finished[reason] for reason in self.REASONS]
        values += [self.faults[kind] for kind in self.FAULTS]
        for name in self.HISTOGRAMS:
            histogram = getattr(self, name)
            values += [*histogram.counts, histogram.total, histogram.count]
        return values

    def load_vector(self, values) -> "ServerStats":
        """Set every counter from a `vector()` (e.g. the sum over workers); returns self."""
        values = [float(v) for v in values]
        position = 0
        for name in self.SCALARS:
            setattr(self, name, int(values[position]))
            position += 1
        for table, keys in ((self.finished, self.REASONS), (self.faults, self.FAULTS)):
            table.clear()
            for key in keys:
                if values[position]:
                    table[key] = int(values[position])
                position += 1
        for name in self.HISTOGRAMS:
            histogram = getattr(self, name)
            size = len(histogram.counts)
            histogram.counts = [int(v) for v in values[position:position + size]]
            histogram.total, histogram.count = values[position + size], int(values[position + size + 1])
            position += size + 2
        return self

    def snapshot(self) -> dict:
        return {"served": self.served, "running": self.running, "waiting": self.waiting,
                "prompt_tokens": self.prompt_tokens,
                "generation_tokens": self.generation_tokens, "cancelled": self.cancelled,
                "finished": dict(self.finished), "faults": dict(self.faults)}

    def render(self, kv_cache_tokens: int) -> bytes:
        labels = f'model_name="{self.model}"'
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[str]) -> None:
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples])

        metric("vllm:num_requests_running", "gauge", "Requests in the running batch.",
               [f"vllm:num_requests_running{{{labels}}} {self.running}"])
        metric("vllm:num_requests_waiting", "gauge", "Requests waiting for a batch slot.",
               [f"vllm:num_requests_waiting{{{labels}}} {self.waiting}"])
        metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage (1 = 100%).",
               [f"vllm:kv_cache_usage_perc{{{labels}}} "
                f"{min(1.0, self.kv_tokens / kv_cache_tokens)}"])
        metric("vllm:prompt_tokens_total", "counter", "Prefill tokens processed.",
               [f"vllm:prompt_tokens_total{{{labels}}} {self.prompt_tokens}"])
        metric("vllm:generation_tokens_total", "counter", "Generation tokens processed.",
               [f"vllm:generation_tokens_total{{{labels}}} {self.generation_tokens}"])
        metric("vllm:prefix_cache_queries_total", "counter",
               "Prefix cache queries, in prompt tokens (0 without --prefix-caching).",
               [f"vllm:prefix_cache_queries_total{{{labels}}} {self.prefix_cache_queries}"])
        metric("vllm:prefix_cache_hits_total", "counter",
               "Prefix cache hits, in prompt tokens found cached.",
               [f"vllm:prefix_cache_hits_total{{{labels}}} {self.prefix_cache_hits}"])
        metric("vllm:request_success_total", "counter", "Successfully finished requests.",
               [f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {count}'
                for reason, count in sorted(self.finished.items())]
               or [f'vllm:request_success_total{{{labels},finished_reason="length"}} 0'])
        metric("vllm:time_to_first_token_seconds", "histogram", "Time to first token.",
               self.ttft.lines("vllm:time_to_first_token_seconds", labels))
        metric("vllm:inter_token_latency_seconds", "histogram", "Inter-token latency.",
               self.itl.lines("vllm:inter_token_latency_seconds", labels))
        metric("vllm:request_time_per_output_token_seconds", "histogram",
               "Mean time per output token after the first, per request.",
               self.tpot.lines("vllm:request_time_per_output_token_seconds", labels))
        metric("vllm:e2e_request_latency_seconds", "histogram", "End-to-end request latency.",
               self.e2e.lines("vllm:e2e_request_latency_seconds", labels))
        for name, histogram, help_text in (
                ("vllm:request_queue_time_seconds", self.queue,
                 "Time requests waited for a batch slot."),
                ("vllm:request_prefill_time_seconds", self.prefill,
                 "Time from admission to the first token."),
                ("vllm:request_decode_time_seconds", self.decode,
                 "Time from the first token to the last.")):
            metric(name, "histogram", help_text, histogram.lines(name, labels))
        metric("hpcbench_sim_requests_served_total", "counter",
               "Generation requests the simulator answered completely (ground truth count).",
               [f"hpcbench_sim_requests_served_total{{{labels}}} {self.served}"])
        metric("hpcbench_sim_requests_cancelled_total", "counter",
               "Generation requests whose client went away before the end.",
               [f"hpcbench_sim_requests_cancelled_total{{{labels}}} {self.cancelled}"])
        metric("hpcbench_sim_faults_total", "counter", "Injected faults by kind.",
               [f'hpcbench_sim_faults_total{{{labels},kind="{kind}"}} {count}'
                for kind, count in sorted(self.faults.items())])
        return ("\n".join(lines) + "\n").encode()
