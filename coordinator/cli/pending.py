"""Verbs whose implementation has not landed yet say so clearly instead of failing oddly."""
from __future__ import annotations

import argparse
import sys


def not_yet(verb: str, issue: int, what: str):
    """Return (configure, run) for a verb that an open issue will bring."""

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        print(f"hpcbench {verb}: not yet available; it arrives with issue #{issue} ({what}).",
              file=sys.stderr)
        return 3

    return configure, run
