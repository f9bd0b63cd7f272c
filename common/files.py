"""Files that cannot be hijacked: atomic writes under unpredictable names, secrets kept private.

Every file hpcbench writes whole (results, summaries, reports, exports, secrets, discovery files)
goes through `write_atomic` or `atomic_output`: the bytes go to a temporary file beside the
target, created with O_CREAT|O_EXCL|O_NOFOLLOW under a random name (a file or symlink someone
planted cannot be opened in its place), flushed to disk, then renamed over the target, so a
reader sees the old file or the new one, never a torn one. Files that grow while a session runs
(raw samples, logs, the telemetry CSV, the simulator's ground truth) are appended in place.

Secrets (the control token, CURVE keys, the TLS key) and files that reveal where a session
listens (coordinator.json) are written with `write_private`: mode 0600 from creation, and only
into a directory that `check_private_dir` accepts: owned by this user, not a symlink, and not
writable by anyone else. A shared results directory another user can write to is refused with
E006 naming it, before anything is written there.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from hpcbench.common.errors import config_error

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file to write `path` through, for content written piece by piece (exports):
    the same rules as `write_atomic`, and nothing replaces `path` unless the block ends
    without an exception."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, _CREATE, mode)
    try:
        with os.fdopen(descriptor, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # only still there when writing failed


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically (see the module docstring); `mode` from creation."""
    with atomic_output(path, mode) as out:
        out.write(data.encode() if isinstance(data, str) else data)


def write_private(path: Path, data: bytes | str) -> None:
    """A secret or discovery file: mode 0600, in a directory only this user can write."""
    path = Path(path)
    check_private_dir(path.parent)
    write_atomic(path, data, mode=0o600)


def check_private_dir(directory: Path) -> None:
    """Create `directory` if it is missing (writable by this user only, whatever the umask);
    E006 unless it is a real directory owned by this user that no one else can write to
    (anyone who can write there could swap our files)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(directory, 0o755)
        os.chmod(directory, 0o755)   # created here: whatever the umask, only we may write
    except FileExistsError:
        pass
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise config_error(f"{directory} is not a directory (a symlink or a file)",
                           ["fix: choose a results or run directory that is a plain directory "
                            "of your own"])
    if info.st_uid != os.geteuid():
        raise config_error(f"{directory} belongs to uid {info.st_uid}, not to you "
                           f"(uid {os.geteuid()}): hpcbench keeps the session's secrets there",
                           ["fix: choose a --results-dir / --run-dir of your own"])
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise config_error(f"{directory} can be written by other users "
                           f"(mode {stat.S_IMODE(info.st_mode):o}): they could replace the "
                           "session's secrets and results",
                           [f"fix: chmod go-w {directory}, or choose a directory only you can "
                            "write"])
