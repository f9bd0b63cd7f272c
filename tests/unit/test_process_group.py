"""common/process_group.py: children are started through the parent-death launcher, and a
program that does not exist is an error at once, not a launcher that exits later."""
from __future__ import annotations

import os
import sys

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.process_group import guarded, spawn
from hpcbench.servers.plugin import LaunchSpec
from tests.support.standalone_server import start_server


def test_guarded_names_this_process_as_the_parent_to_die_with():
    assert guarded(["hpcbench", "sim"]) == [sys.executable, "-m", "hpcbench.common.process_group",
                                            str(os.getpid()), "--", "hpcbench", "sim"]


def test_a_missing_program_is_an_error_before_anything_starts(tmp_path):
    with pytest.raises(FileNotFoundError):
        spawn(["hpcbench-no-such-program"], None, tmp_path / "x.log")
    with pytest.raises(HpcbenchError) as raised:
        start_server(LaunchSpec(argv=["hpcbench-no-such-program"], base_url="http://x:1"),
                     tmp_path / "server.log")
    assert raised.value.code == "E001" and "hpcbench-no-such-program" in str(raised.value)
