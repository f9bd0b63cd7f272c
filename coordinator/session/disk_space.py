"""Refuse to start load when the results directory cannot hold the session's results.

A filesystem that fills up mid-run loses samples and leaves half-written summaries, so the
session checks the free space of its directory before any load starts. The need is a floor
for the session's own files (logs, events, report) plus an estimate per trial to run (its
sample batches, intervals and summary); both are deliberately generous round figures.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from hpcbench.common.errors import config_error

SESSION_FLOOR_BYTES = 64 * 2**20   # logs, events, session.json, report
PER_TRIAL_BYTES = 16 * 2**20       # sample batches, interval CSVs, summary of one trial


def bytes_needed(trials: int) -> int:
    """Free space a session about to run `trials` trials asks for."""
    return SESSION_FLOOR_BYTES + PER_TRIAL_BYTES * trials


def check_free_space(directory: Path, trials: int) -> None:
    """E006 naming the directory, its free bytes and the need when there is too little room."""
    free = shutil.disk_usage(directory).free
    need = bytes_needed(trials)
    if free < need:
        raise config_error(
            f"the results directory {directory} has {free} bytes free; {trials} trial(s) need "
            f"about {need} bytes ({SESSION_FLOOR_BYTES // 2**20} MiB + "
            f"{PER_TRIAL_BYTES // 2**20} MiB per trial)",
            ["fix: free space there or choose another --results-dir (recipe results_dir)"])
