"""Whether the podman suites can run: podman installed and hpcbench's images built
(`make images` builds localhost/hpcbench-<component>:<version> where Apptainer is absent)."""
from __future__ import annotations

import shutil
import subprocess

from hpcbench.servers.runtime import hpcbench_image

COMPONENTS = ("executor", "monitor")


def images_missing() -> str | None:
    """Why the podman suites cannot run here, or None."""
    if not shutil.which("podman"):
        return "podman is not installed (apt-get install podman runc debootstrap)"
    for component in COMPONENTS:
        image = hpcbench_image(component, {}, "podman")[0]
        if subprocess.run(["podman", "image", "exists", image]).returncode != 0:
            return f"podman has no {image} (run `make images`)"
    return None
