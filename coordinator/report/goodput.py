"""Goodput against the recipe's SLOs: which measured requests meet each SLO, and all of them.

The rule is the measurement core's (common/measure/definitions.py `meets_slo`): a request is
good when it succeeded and meets every SLO of the trial (ttft, tpot, e2e per request; itl as its
largest gap); a latency the request does not define (e.g. TPOT of a one-token answer) does not
fail it, except TTFT, which needs a first token.
"""
from __future__ import annotations

from dataclasses import dataclass

from hpcbench.common.measure.definitions import meets_slo
from hpcbench.coordinator.report.requests import RequestTable


@dataclass
class SloAttainment:
    requests: int                     # measured requests
    ok: int
    good: int                         # ok and within every SLO
    seconds: float | None             # measured window (summary.json)
    within: dict[str, int]            # SLO metric -> ok requests within it

    def rate(self, amount: int) -> float | None:
        return amount / self.seconds if self.seconds else None


def slo_attainment(table: RequestTable, slos_s: dict[str, float],
                   seconds: float | None) -> SloAttainment:
    ok = table.ok
    good = ok.copy()
    within = {}
    latencies = {name: table.columns[f"{name}_ns"] for name in ("ttft", "tpot", "e2e", "max_itl")}
    for name, limit_s in sorted(slos_s.items()):
        meets = ok & meets_slo(name, latencies, int(round(limit_s * 1e9)))
        within[name] = int(meets.sum())
        good &= meets
    return SloAttainment(int(table.measured.sum()), int(ok.sum()), int(good.sum()), seconds,
                         within)
