"""Runtime wrapping of a server command: `process` runs it as is, `apptainer` runs it in the
recipe's service image (`apptainer exec --nv --bind ... IMAGE cmd`).

Apptainer passes the caller's environment into the container, so a LaunchSpec's env works the
same in both runtimes.
"""
from __future__ import annotations

from pathlib import Path

from hpcbench.common.errors import config_error

RUNTIMES = ("process", "apptainer")


def service_image(artifacts: dict) -> str:
    """The service image path from recipe `artifacts` (service.path under containers_dir)."""
    service = artifacts.get("service") or {}
    path = service.get("path") if isinstance(service, dict) else None
    if not path:
        raise config_error("runtime apptainer needs artifacts.service.path (a .sif image)",
                           ["fix: set artifacts.service.path, e.g. vllm_latest.sif, and "
                            "artifacts.containers_dir, or use runtime: process"])
    base = artifacts.get("containers_dir")
    return str(Path(base) / path) if base and not Path(path).is_absolute() else str(path)


def wrap(argv: list[str], runtime: str, artifacts: dict, binds: list[str],
         gpus: bool = True) -> list[str]:
    """Return argv for `runtime`; `gpus` adds --nv (NVIDIA libraries) under Apptainer."""
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
    return wrapped + [service_image(artifacts), *argv]
