"""Error codes shared by every hpcbench component (E001-E008, from the product's reference).

Each failure a user can meet is an `HpcbenchError` with one of these codes, a message that names
the field or value and the fix, and a process exit code. The CLI prints `error E00N: message` and
exits with the code's exit status; it never shows a traceback for an `HpcbenchError`.
"""
from __future__ import annotations

from dataclasses import dataclass

# code -> (title, process exit status). E006 (bad recipe / bad input) exits 2 like argparse usage
# errors; the others exit 10 + N so scripts can tell them apart.
ERROR_CODES: dict[str, tuple[str, int]] = {
    "E001": ("Server health check failed", 11),
    "E002": ("Client health check failed", 12),
    "E003": ("Service preparation failed", 13),
    "E004": ("Workload start failed", 14),
    "E005": ("Metrics collection failed", 15),
    "E006": ("Configuration validation failed", 2),
    "E007": ("Timeout exceeded", 17),
    "E008": ("Network connection failed", 18),
}


@dataclass
class HpcbenchError(Exception):
    """A failure with a reference error code; `details` are extra lines (e.g. one per problem)."""

    code: str
    message: str
    details: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"unknown error code {self.code!r}")
        super().__init__(self.message)

    @property
    def exit_status(self) -> int:
        return ERROR_CODES[self.code][1]

    def render(self) -> str:
        """The text the CLI prints: one headline, then the details indented."""
        lines = [f"error {self.code}: {self.message}"]
        lines.extend(f"  {line}" for line in self.details)
        return "\n".join(lines)


def config_error(message: str, details: tuple[str, ...] | list[str] = ()) -> HpcbenchError:
    """Shorthand for the most common error: bad configuration or input (E006, exit 2)."""
    return HpcbenchError("E006", message, tuple(details))
