"""SimulatorApp: the routing table and shared state of one simulator instance.

Holds the timing engine, statistics, ground truth and the served model names, and maps
(method, path) to handlers. While not ready (`not_ready_s` after start) every route except
/metrics answers 503, as a server that is still loading its model would.
"""
from __future__ import annotations

import itertools
import json
import time
from functools import partial

from hpcbench.servers.simulator import ollama_api, openai_api
from hpcbench.servers.simulator.config import SimulatorConfig
from hpcbench.servers.simulator.engine import Engine
from hpcbench.servers.simulator.http import Exchange, Handler, Request
from hpcbench.servers.simulator.metrics import ServerStats
from hpcbench.servers.simulator.shared_stats import SharedStatsTable
from hpcbench.servers.simulator.truth import TruthLog


class SimulatorApp:
    """One simulator: create it inside the event loop that will serve it."""

    def __init__(self, config: SimulatorConfig, truth: TruthLog | None,
                 shared: SharedStatsTable | None = None, worker: int = 0) -> None:
        self.config = config
        self.models = list(config.models)
        self.stats = ServerStats(config.model)
        self.truth = truth
        self.shared = shared
        publish = partial(shared.publish, worker, self.stats) if shared is not None else None
        self.engine = Engine(config, self.stats, truth.add if truth is not None else None,
                             publish)
        self.started_wall = int(time.time())
        self.ready_at = time.perf_counter() + config.not_ready_s
        # ids unique across worker processes: worker k of n numbers k+1, k+1+n, ...
        self._ids = itertools.count(worker + 1, shared.table.shape[0] if shared else 1)
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): partial(openai_api.generate, self, chat=True),
            ("POST", "/v1/completions"): partial(openai_api.generate, self, chat=False),
            ("GET", "/v1/models"): partial(openai_api.models, self),
            ("POST", "/api/generate"): partial(ollama_api.generate, self, chat=False),
            ("POST", "/api/chat"): partial(ollama_api.generate, self, chat=True),
            ("GET", "/api/tags"): partial(ollama_api.tags, self),
            ("GET", "/api/ps"): partial(ollama_api.ps, self),
            ("GET", "/api/version"): partial(ollama_api.version, self),
            ("GET", "/version"): partial(ollama_api.version, self),
            ("POST", "/api/pull"): partial(ollama_api.pull, self),
            ("GET", "/"): partial(ollama_api.root, self),
            ("GET", "/health"): self._health,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/sim/stats"): self._sim_stats,
        }

    def route(self, method: str, path: str) -> Handler | None:
        if path != "/metrics" and time.perf_counter() < self.ready_at:
            return self._not_ready
        return self.routes.get((method, path))

    def next_id(self) -> int:
        return next(self._ids)

    def served_model(self, name) -> str | None:
        """The served model a request names (`name` or `name:latest`), or None."""
        if not isinstance(name, str):
            return None
        for model in self.models:
            if name == model or name.removesuffix(":latest") == model.removesuffix(":latest"):
                return model
        return None

    def add_model(self, name: str) -> None:
        if self.served_model(name) is None:
            self.models.append(name)

    def reject_with_fault(self, exchange: Exchange, info: dict, body) -> None:
        """Answer an injected error fault with the configured status."""
        status = self.config.error_status
        self.engine.count_fault("error", info)
        retry = "Retry-After: 1\r\n" if status in (429, 503) else ""
        exchange.respond_json(status, body(status), retry)

    def _health(self, request: Request, exchange: Exchange) -> None:
        exchange.respond(200, b"")

    def _not_ready(self, request: Request, exchange: Exchange) -> None:
        left = max(0.0, self.ready_at - time.perf_counter())
        exchange.respond_json(503, {"error": f"simulator not ready (loading model, "
                                             f"{left:.1f}s left)"}, "Retry-After: 1\r\n")

    def _metrics(self, request: Request, exchange: Exchange) -> None:
        exchange.respond(200, self.all_stats().render(self.config.kv_cache_tokens),
                         "text/plain; version=0.0.4; charset=utf-8")

    def _sim_stats(self, request: Request, exchange: Exchange) -> None:
        exchange.respond(200, json.dumps(self.all_stats().snapshot()).encode())

    def all_stats(self) -> ServerStats:
        """This process's stats, or the sum over all worker processes."""
        return self.shared.combined() if self.shared is not None else self.stats
