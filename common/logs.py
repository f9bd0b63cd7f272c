"""Logging for every hpcbench program: configured once per process, to stderr.

Modules log through `logging.getLogger(__name__)`; a program's `main` calls
`configure_logging("hpcbench-monitor")` first. Lines read `PROGRAM: message` (an error's
message already starts with its code, `error E00N: ...`), which is what the session's
per-component log files in `<run>/logs/` hold.
HPCBENCH_LOG_LEVEL (DEBUG, INFO, WARNING, ...) changes the level for every component at once.
"""
from __future__ import annotations

import logging
import os
import sys


def configure_logging(program: str, level: int | str | None = None) -> None:
    """Send this process's log records to stderr as `program: message`. Calling it again (a
    test running several mains in one process) replaces the handler rather than adding one."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "hpcbench", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.hpcbench = True
    handler.setFormatter(logging.Formatter(program.replace("%", "%%") + ": %(message)s"))
    root.addHandler(handler)
    chosen = level or os.environ.get("HPCBENCH_LOG_LEVEL", "INFO")
    try:
        root.setLevel(chosen.upper() if isinstance(chosen, str) else chosen)
    except ValueError:
        root.setLevel(logging.INFO)
        logging.getLogger(__name__).warning(
            "HPCBENCH_LOG_LEVEL=%r is not a level; use DEBUG, INFO, WARNING or ERROR", chosen)
