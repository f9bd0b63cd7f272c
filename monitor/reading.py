"""One source's values at one sample tick, in the shape of the telemetry contract."""
from __future__ import annotations

from dataclasses import dataclass, field

Labels = dict[str, str]


@dataclass
class Reading:
    """Unlabelled node values (`metrics`) and labelled ones (`series`: name, labels, value).

    Every source (node, service process, GPUs, server /metrics) returns one; the sampler merges
    them into one telemetry message per tick (proto/telemetry.py).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    series: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, name: str, value: float, labels: Labels | None = None) -> None:
        if labels:
            self.series.append((name, labels, float(value)))
        else:
            self.metrics[name] = float(value)

    def merge(self, other: "Reading") -> None:
        self.metrics.update(other.metrics)
        self.series.extend(other.series)
