"""Ids that become path components or labels: one safe form, checked before anything is written.

A session id names its run directory (`<results>/<scenario>/<session>/`), so `../../x`, `/tmp/x`
or `a/b` would put a whole run (and its control token) outside the results directory. Every
entry that takes a session id (`hpcbench run --session`, Control.StartSession, run.sbatch's
Slurm job id, `hpcbench status/stop/watch --session`) calls `check_id` first.

The form: a letter or digit, then up to 63 letters, digits, '.', '_' or '-', and no '..'
anywhere. Ids made by hpcbench (`20261206-141502-a1b2`, Slurm job ids) have that form; so do
recipe `scenario` names (the schema uses the same pattern, `ID_PATTERN`).
"""
from __future__ import annotations

import re

from hpcbench.common.errors import config_error

ID_MAX_LENGTH = 64
# JSON Schema copy (recipe.schema.json uses it for `scenario`; a unit test keeps them equal)
ID_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ID_FORM = ("1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, "
           "without '..'")
_ID = re.compile(ID_PATTERN)


def is_valid_id(value: object) -> bool:
    """Whether `value` is a string of the safe id form."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(value: object, what: str = "session id", fix: str = "") -> str:
    """`value` when it has the safe id form; else E006 naming `what`, the value and the form.

    `fix` replaces the default advice (choose another id of the form) where the id comes from
    somewhere else, e.g. Slurm's job id."""
    if is_valid_id(value):
        return value
    shown = repr(value) if len(repr(value)) <= 100 else repr(value)[:97] + "..."
    raise config_error(f"{what} {shown} is not allowed: an id names a directory, so it must be "
                       f"{ID_FORM}",
                       [fix or f"fix: choose a {what} such as 'baseline-2' or 'run_7.1'"])

