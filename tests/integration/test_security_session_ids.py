"""Session ids and recipes from other processes: `hpcbench run --session ../x` and an
`hpcbench-coordinator` daemon's StartSession refuse a bad id (and a hostile recipe text) with
E006 before writing anything, and the daemon goes on serving."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.control.client import ControlClient, locate
from tests.support.faults import record

RECIPE = "scenario: ids\nworkload: {service: simulator, model: sim-model, duration: 1s}\n"
BAD_IDS = ["../x", "../../x", "a/b", "..", "ABSOLUTE"]


def tree(root: Path) -> list[str]:
    """Every path under `root`, relative, sorted."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.mark.parametrize("session", BAD_IDS)
def test_hpcbench_run_refuses_a_bad_session_id_and_writes_nothing(tmp_path, session):
    record("bad_inputs")
    recipe = tmp_path / "in" / "recipe.yaml"
    recipe.parent.mkdir()
    recipe.write_text(RECIPE)
    work = tmp_path / "work"            # the results dir's parent, and the current directory
    work.mkdir()
    if session == "ABSOLUTE":
        session = str(tmp_path / "elsewhere")
    done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "run",
                           str(recipe), "--session", session, "--results-dir",
                           str(work / "results"), "--no-live"],
                          cwd=work, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert done.returncode == 2, done.stderr
    assert f"error E006: --session id {session!r} is not allowed" in done.stderr
    assert "letters, digits" in done.stderr and "Traceback" not in done.stderr
    assert tree(work) == []                                   # no results dir, no token
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in", "work"]


@pytest.fixture
def serving_daemon(daemon_process):
    """The daemon's run dir; after the test, the daemon must still be serving."""
    process, run_dir = daemon_process
    yield run_dir
    assert process.poll() is None    # still serving after every refusal


def start_refused(client: ControlClient, **request) -> str:
    record("bad_inputs")
    with pytest.raises(HpcbenchError) as caught:
        client.start(**request)
    message = caught.value.message
    assert message.startswith("INVALID_ARGUMENT: error E006: "), message
    assert "Traceback" not in message
    return message


def test_start_session_over_grpc_refuses_bad_ids_and_hostile_recipes(tmp_path, serving_daemon):
    before = tree(serving_daemon)
    with ControlClient(locate(run_dir=serving_daemon)) as client:
        for session in [*BAD_IDS[:-1], str(tmp_path / "elsewhere"), "x" * 65, "a\nb"]:
            message = start_refused(client, recipe_yaml=RECIPE, session_id=session)
            assert f"session id {session!r} is not allowed" in message
            assert "letters, digits" in message

        bomb = RECIPE + "metadata:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + \
            "".join(f"  l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]\n" for k in range(1, 9))
        assert "YAML nodes" in start_refused(client, recipe_yaml=bomb, session_id="bomb")
        huge = RECIPE + "metadata: {notes: '" + "x" * (1024 * 1024) + "'}\n"
        assert "StartSession recipe_yaml is too large" in start_refused(
            client, recipe_yaml=huge, session_id="huge")
        assert "line 3, column 1: duplicate key 'scenario'" in start_refused(
            client, recipe_yaml=RECIPE + "scenario: again\n", session_id="dup")
        assert "workload.concurrency: got 1000000000" in start_refused(
            client, recipe_yaml=RECIPE.replace("duration: 1s", "concurrency: 1000000000"))
    assert not (tmp_path / "results").exists() and not (tmp_path / "elsewhere").exists()
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    assert tree(serving_daemon) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["daemon"]
