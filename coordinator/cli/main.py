"""The `hpcbench` command: a verb tree, one module per verb in `hpcbench.coordinator.cli`.

Each verb module defines `HELP` (one line), `configure(parser)` to add its arguments and
`run(args) -> int` to do the work. Verb modules import heavy dependencies inside `run`, so
`hpcbench --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from hpcbench.common.errors import ERROR_CODES, HpcbenchError, config_error
from hpcbench.common.logs import configure_logging

# Order is the order shown in `hpcbench --help`.
VERBS: tuple[tuple[str, str], ...] = (
    ("create", "hpcbench.coordinator.cli.create"),
    ("list", "hpcbench.coordinator.cli.list_recipes"),
    ("validate", "hpcbench.coordinator.cli.validate"),
    ("plan", "hpcbench.coordinator.cli.plan"),
    ("run", "hpcbench.coordinator.cli.run"),
    ("submit", "hpcbench.coordinator.cli.submit"),
    ("status", "hpcbench.coordinator.cli.status"),
    ("watch", "hpcbench.coordinator.cli.watch"),
    ("stop", "hpcbench.coordinator.cli.stop"),
    ("fetch", "hpcbench.coordinator.cli.fetch"),
    ("tunnel", "hpcbench.coordinator.cli.tunnel"),
    ("report", "hpcbench.coordinator.cli.report"),
    ("compare", "hpcbench.coordinator.cli.compare"),
    ("sim", "hpcbench.coordinator.cli.sim"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcbench",
        description="Benchmark LLM inference services (Ollama, vLLM, llama.cpp, plugins) "
                    "on one machine or a Slurm cluster, with live metrics.",
    )
    parser.add_argument("--version", action="version", version=f"hpcbench {_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, module_name in VERBS:
        module = importlib.import_module(module_name)
        sub = verbs.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.run)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("hpcbench")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(f"hpcbench {args.verb}")   # diagnostics; results and errors are printed
    try:
        return int(args.handler(args) or 0)
    except HpcbenchError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_status
    except OSError as error:                   # e.g. a path the user gave that the OS refuses
        if error.filename is None:
            raise
        print(config_error(f"{error.filename}: {error.strerror or error}",
                           ("check the path and its permissions",)).render(), file=sys.stderr)
        return ERROR_CODES["E006"][1]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
