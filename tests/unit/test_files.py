"""Files that cannot be hijacked (common/files.py): planted files and links, foreign dirs."""
from __future__ import annotations

import os
import pwd
import stat

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.files import check_private_dir, write_atomic, write_private
from hpcbench.coordinator.control.server import Coordinator

ROOT = os.geteuid() == 0


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_planted_temporary_file_or_link_decides_nothing(tmp_path):
    """Before: the token went through `.control.token.<pid>`, opened without O_EXCL, so a file
    planted there with mode 666 made the token world-readable."""
    (tmp_path / f".control.token.{os.getpid()}").write_text("planted")
    os.chmod(tmp_path / f".control.token.{os.getpid()}", 0o666)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_text("not yours")
    (tmp_path / "control.token").symlink_to(outside)
    old_umask = os.umask(0)
    try:
        write_private(tmp_path / "control.token", "secret\n")
    finally:
        os.umask(old_umask)
    assert mode(tmp_path / "control.token") == 0o600
    assert not (tmp_path / "control.token").is_symlink()
    assert outside.read_text() == "not yours"               # the link was replaced, not followed
    leftovers = [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")]
    assert leftovers == []


def test_a_directory_other_users_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(HpcbenchError) as refused:
        write_private(shared / "control.token", "secret")
    assert refused.value.code == "E006" and "chmod go-w" in refused.value.render()
    assert list(shared.iterdir()) == []
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(HpcbenchError, match="not a directory"):
        check_private_dir(link)


@pytest.mark.skipif(not ROOT, reason="giving a directory to another user needs root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(HpcbenchError) as refused:
        Coordinator(theirs)
    assert refused.value.code == "E006" and "belongs to uid" in refused.value.render()
    assert list(theirs.iterdir()) == []


def test_a_directory_made_here_is_private_whatever_the_umask(tmp_path):
    old_umask = os.umask(0)
    try:
        check_private_dir(tmp_path / "new")
    finally:
        os.umask(old_umask)
    assert mode(tmp_path / "new") == 0o755


def test_the_coordinators_secrets_and_discovery_file_are_its_users_only(tmp_path):
    coordinator = Coordinator(tmp_path / "run").start()
    try:
        for name in ("control.token", "coordinator.json"):
            assert mode(tmp_path / "run" / name) == 0o600, name
    finally:
        coordinator.stop(grace_s=0)


def test_atomic_writes_use_unpredictable_names(tmp_path, monkeypatch):
    names = []
    real_open = os.open

    def spy(path, flags, *args):
        names.append(os.path.basename(path))
        assert flags & os.O_EXCL and flags & os.O_NOFOLLOW
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", spy)
    write_atomic(tmp_path / "a.json", "1")
    write_atomic(tmp_path / "a.json", "2")
    assert len(set(names)) == 2 and str(os.getpid()) not in names[0]
