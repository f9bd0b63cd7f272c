"""Recipe fuzzing, the CLI end: `hpcbench validate` as a process prints E006 for a broken recipe,
never a traceback (the fuzzing itself runs in process in tests/unit/test_fuzz_recipes.py)."""
import subprocess
import sys


def test_the_cli_prints_e006_without_a_traceback_for_broken_recipes(tmp_path, cli_env):
    broken = tmp_path / "broken.yaml"
    broken.write_text("scenario: [\nworkload: {duration: 2x}\n" + "[" * 3000 + "\n")
    done = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "validate",
                           str(broken)], capture_output=True, text=True, env=cli_env, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "E006" in done.stdout + done.stderr and "Traceback" not in done.stderr
