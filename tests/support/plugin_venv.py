"""Fresh venvs with hpcbench and example plugins installed the way a user installs them:
`python -m venv`, then pip with this checkout (built into a wheel once) and the plugins'
folders. pip's cache and the configured indexes serve the dependencies."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "servers" / "examples"


def _run(argv: list, what: str, timeout: float = 900) -> None:
    done = subprocess.run([str(word) for word in argv], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def hpcbench_wheel(out_dir: Path) -> Path:
    """This checkout as a wheel in `out_dir` (what `make wheel` builds)."""
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out_dir, REPO],
         "building the hpcbench wheel")
    (wheel,) = out_dir.glob("hpcbench-*.whl")
    return wheel


def fresh_venv(where: Path, wheel: Path, *plugins: str) -> Path:
    """A new venv at `where` with the hpcbench `wheel` and the example plugins named (folders
    of servers/examples) installed; returns its bin folder."""
    _run([sys.executable, "-m", "venv", where], "python -m venv")
    _run([where / "bin" / "python", "-m", "pip", "install", "-q", wheel,
          *(EXAMPLES / name for name in plugins)], f"pip install of {', '.join(plugins)}")
    return where / "bin"
