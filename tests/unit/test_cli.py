"""The `hpcbench` verb tree: every verb has --help, and unknown verbs fail with usage."""

import pytest

from hpcbench.coordinator.cli.main import VERBS, main


@pytest.mark.parametrize("verb", [name for name, _ in VERBS])
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert f"hpcbench {verb}" in capsys.readouterr().out


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
