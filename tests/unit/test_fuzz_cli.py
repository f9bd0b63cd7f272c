"""CLI fuzzing (hypothesis): random arguments to the read-only verbs end in an exit status with
a message (argparse usage: 2, HpcbenchError: its code's status), never a traceback.

Only verbs that cannot start load are fuzzed (validate, plan, list, status, stop, report,
compare), in a scratch working directory, so a fuzzed path cannot touch the repository.
"""
from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcbench.common.errors import ERROR_CODES
from hpcbench.coordinator.cli.main import main
from tests.support.faults import record

VERBS = ("validate", "plan", "list", "status", "stop", "report", "compare")
OPTIONS = ("--json", "--commands", "--nodes", "--run-dir", "--session", "--token-file",
           "--reason", "--out", "-h", "--format", "--executors", "--")
EXIT_STATUSES = {0, 1, 2} | {status for _, status in ERROR_CODES.values()}
words = st.one_of(st.sampled_from(OPTIONS),
                  st.sampled_from(["recipes/examples/local-sim.yaml", "/", ".", "-1", "0",
                                   "1e309", "nan", "/dev/null", "/proc/self/mem", "x" * 300]),
                  st.text(min_size=0, max_size=20).filter(lambda text: "\0" not in text))


@pytest.fixture
def scratch(tmp_path, monkeypatch, repo):
    (tmp_path / "recipes").symlink_to(repo / "recipes")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from(VERBS), arguments=st.lists(words, max_size=4))
def test_random_arguments_end_with_an_exit_status_not_a_traceback(scratch, verb, arguments):
    record("bad_inputs")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([verb, *arguments])
        except SystemExit as exit_:            # argparse: usage errors and --help
            status = exit_.code if isinstance(exit_.code, int) else 2
    assert status in EXIT_STATUSES, (status, err.getvalue())
    assert "Traceback" not in err.getvalue()
    if status not in (0, 1):
        assert err.getvalue().strip(), "a failure must say why"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["control", "session", "bus", "pid", "x"]), c, max_size=4),
    max_leaves=8)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from(["status", "stop"]), address_file=json_values,
       token=st.text(max_size=40).filter(lambda text: "\0" not in text))
def test_a_garbage_run_dir_is_an_error_not_a_traceback(scratch, verb, address_file, token):
    """status/stop read coordinator.json and control.token from --run-dir: whatever those
    hold, the answer is an error naming the problem (an address that answers nobody: E008)."""
    import json

    record("bad_inputs")
    run_dir = scratch / "run"
    run_dir.mkdir(exist_ok=True)
    if isinstance(address_file, dict) and isinstance(address_file.get("control"), str):
        address_file["control"] = "127.0.0.1:1"     # never a real server: no waiting on one
    (run_dir / "coordinator.json").write_text(json.dumps(address_file))
    (run_dir / "control.token").write_text(token)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main([verb, "--run-dir", str(run_dir)])
    assert status in EXIT_STATUSES and status != 0, err.getvalue()
    assert err.getvalue().startswith("error E00"), err.getvalue()
