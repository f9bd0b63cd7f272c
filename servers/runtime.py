"""Runtime wrapping of a server command: `process` runs it as is, `apptainer` runs it in the
recipe's service image (`apptainer exec --nv --bind ... IMAGE cmd`).

Apptainer passes the caller's environment into the container, so a LaunchSpec's env works the
same in both runtimes.
"""
from __future__ import annotations

import os
from pathlib import Path

from hpcbench.common.errors import config_error

RUNTIMES = ("process", "apptainer")


def _under_containers_dir(artifacts: dict, path: str) -> str:
    base = artifacts.get("containers_dir")
    return str(Path(base) / path) if base and not Path(path).is_absolute() else str(path)


def service_image(artifacts: dict) -> str:
    """The service image path from recipe `artifacts` (service.path under containers_dir)."""
    service = artifacts.get("service") or {}
    path = service.get("path") if isinstance(service, dict) else None
    if not path:
        raise config_error("runtime apptainer needs artifacts.service.path (a .sif image)",
                           ["fix: set artifacts.service.path, e.g. vllm_latest.sif, and "
                            "artifacts.containers_dir, or use runtime: process"])
    return _under_containers_dir(artifacts, path)


def hpcbench_image(component: str, artifacts: dict) -> tuple[str, str | None, str]:
    """(image, remote, where from) of the image that runs one of hpcbench's own programs
    (`executor`, `monitor`; the simulator runs in the executor's): `artifacts.<component>`,
    else `artifacts.python` (one image with Python and hpcbench for all of them), else the
    image `make images` builds, containers/hpcbench-<component>.sif in the submit directory.
    Paths are under `artifacts.containers_dir`; "where from" names the recipe key."""
    for key in (component, "python"):
        entry = artifacts.get(key) or {}
        if isinstance(entry, dict) and entry.get("path"):
            return (_under_containers_dir(artifacts, entry["path"]), entry.get("remote"),
                    f"artifacts.{key}")
    submit_dir = Path(os.environ.get("SLURM_SUBMIT_DIR", "."))
    return str(submit_dir / "containers" / f"hpcbench-{component}.sif"), None, "make images"


def wrap(argv: list[str], runtime: str, artifacts: dict, binds: list[str],
         gpus: bool = True, image: str | None = None) -> list[str]:
    """Return argv for `runtime`; `gpus` adds --nv (NVIDIA libraries) under Apptainer, whose
    image is `image`, by default the service's (`service_image`)."""
    if runtime == "process":
        return list(argv)
    if runtime != "apptainer":
        raise config_error(f"runtime {runtime!r} is not known",
                           [f"fix: use one of {', '.join(RUNTIMES)}"])
    wrapped = ["apptainer", "exec"]
    if gpus:
        wrapped.append("--nv")
    for bind in binds:
        wrapped += ["--bind", bind]
    return wrapped + [image or service_image(artifacts), *argv]
