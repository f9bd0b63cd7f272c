"""The `hpcbench` verb tree: every verb has --help, and unknown verbs fail with usage."""
import subprocess

import pytest

from hpcbench.coordinator.cli.main import VERBS, main


@pytest.mark.parametrize("verb", [name for name, _ in VERBS])
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert f"hpcbench {verb}" in capsys.readouterr().out


def test_console_script_is_installed(cli_env):
    done = subprocess.run(["hpcbench", "--help"], capture_output=True, text=True, env=cli_env)
    assert done.returncode == 0
    for name, _ in VERBS:
        assert name in done.stdout


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
