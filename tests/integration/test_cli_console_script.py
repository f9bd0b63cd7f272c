"""The installed `hpcbench` console script runs as a process (the verb tree itself is checked
in process by tests/unit/test_cli.py)."""
import subprocess

from hpcbench.coordinator.cli.main import VERBS


def test_console_script_is_installed(cli_env):
    done = subprocess.run(["hpcbench", "--help"], capture_output=True, text=True, env=cli_env)
    assert done.returncode == 0
    for name, _ in VERBS:
        assert name in done.stdout
