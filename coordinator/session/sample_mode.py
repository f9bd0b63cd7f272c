"""Which way a trial's samples travel: raw batches or histogram-mode summaries (docs/scale.md).

The recipe's `aggregation` block decides it per trial from the number of executors; the
session sends each executor its mode (proto/trial.py `samples`), `hpcbench plan` shows it, and
every summary.json records it with the reason.
"""
from __future__ import annotations

from hpcbench.proto.trial import HISTOGRAMS, RAW


def aggregation_mode(settings: dict, executors: int) -> dict:
    """The recipe's `aggregation` applied to a trial's executor count: {"mode", "reason"},
    recorded in summary.json. auto sends raw batches below `histograms_from` executors and
    histograms from there on (docs/scale.md has the figures behind the default)."""
    if settings["mode"] != "auto":
        return {"mode": settings["mode"], "reason": "set by the recipe"}
    threshold = settings["histograms_from"]
    if executors >= threshold:
        return {"mode": HISTOGRAMS,
                "reason": f"auto: {executors} executor(s) >= histograms_from {threshold}"}
    return {"mode": RAW, "reason": f"auto: {executors} executor(s) < histograms_from {threshold}"}
