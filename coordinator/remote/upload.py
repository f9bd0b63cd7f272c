"""Copy a recipe and what it needs to the login node, ready for `hpcbench submit` there.

What a job needs beyond hpcbench: the recipe, the local files it names (workload.dataset.path,
workload.load.trace) and plugin wheels. One tar stream over the SSH connection carries them
into <remote dir> (the submit directory, so results land under <remote dir>/results): the
recipe as recipes/<stamp>-<name>, its files as inputs/<stamp>/<name> (the copied recipe names
them by absolute path, since the executors read them from wherever their step runs), wheels as
plugins/<name>, installed into the Python that runs the remote hpcbench. A named path that does
not exist here is left as it is: a path on the cluster.
"""
from __future__ import annotations

import io
import shlex
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hpcbench.common.errors import config_error
from hpcbench.coordinator.remote.ssh import SshConnection, remote_path

# recipe keys whose value is a file the executors read
FILE_KEYS = (("workload", "dataset", "path"), ("workload", "load", "trace"))


@dataclass
class Upload:
    """What goes to the login node, as paths relative to the remote directory."""

    recipe_name: str
    recipe_bytes: bytes
    files: dict[str, Path] = field(default_factory=dict)     # remote name -> local file
    wheels: list[str] = field(default_factory=list)          # remote names under plugins/

    def tar(self) -> bytes:
        """All of it as one uncompressed tar (the wheels are zip files already)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            _add_bytes(archive, self.recipe_name, self.recipe_bytes)
            for name, local in self.files.items():
                archive.add(str(local), arcname=name, recursive=False)
        return buffer.getvalue()


def prepare(recipe_path: Path, wheels: list[str], remote_base: str,
            stamp: str | None = None) -> Upload:
    """The recipe (rewritten only when it names local files) and the files it names, which the
    copied recipe finds under `remote_base` (the remote directory's absolute path)."""
    from hpcbench.recipes.loader import read_yaml

    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    raw = read_yaml(recipe_path)
    files: dict[str, Path] = {}
    for keys in FILE_KEYS:
        parent = _parent(raw, keys)
        value = parent.get(keys[-1]) if parent is not None else None
        if not isinstance(value, str) or not Path(value).expanduser().is_file():
            continue
        remote_name = f"inputs/{stamp}/{Path(value).name}"
        files[remote_name] = Path(value).expanduser().resolve()
        parent[keys[-1]] = f"{remote_base.rstrip('/')}/{remote_name}"
    text = yaml.safe_dump(raw, sort_keys=False).encode() if files else recipe_path.read_bytes()
    upload = Upload(f"recipes/{stamp}-{recipe_path.name}", text, files)
    for wheel in wheels:
        local = Path(wheel).expanduser()
        if not local.is_file() or local.suffix != ".whl":
            raise config_error(f"--wheel {wheel}: not a wheel file (.whl)",
                               ["fix: build the plugin's wheel, e.g. `pip wheel --no-deps -w "
                                "dist path/to/plugin`, and pass dist/NAME.whl"])
        upload.files[f"plugins/{local.name}"] = local.resolve()
        upload.wheels.append(f"plugins/{local.name}")
    return upload


def make_remote_dir(ssh: SshConnection, remote_dir: str) -> str:
    """Create the remote directory when missing; its absolute path on the login node."""
    made = ssh.run(f"mkdir -p -- {remote_path(remote_dir)} && cd -- {remote_path(remote_dir)} "
                   "&& pwd -P")
    where = made.stdout.decode(errors="replace").strip()
    if made.returncode != 0 or not where.startswith("/"):
        raise config_error(f"cannot create {ssh.host}:{remote_dir}: "
                           f"{made.stderr.decode(errors='replace').strip()}",
                           ["fix: choose a --remote-dir you can write on the login node, on a "
                            "filesystem the compute nodes share"])
    return where


def send(ssh: SshConnection, upload: Upload, remote_dir: str) -> None:
    """Unpack the upload into remote_dir on the login node (created when missing)."""
    where = remote_path(remote_dir)
    copied = ssh.run(f"tar -x -f - -C {where}", input_bytes=upload.tar())
    if copied.returncode != 0:
        raise config_error(f"cannot copy the recipe to {ssh.host}:{remote_dir}: "
                           f"{copied.stderr.decode(errors='replace').strip()}",
                           ["fix: choose a --remote-dir you can write on the login node, on a "
                            "filesystem the compute nodes share"])


def install_wheels(ssh: SshConnection, upload: Upload, remote_dir: str, hpcbench: str) -> None:
    """pip-install the plugin wheels into the Python environment of the remote hpcbench (the
    one run.sbatch finds), so its executors and recipes know the plugins."""
    if not upload.wheels:
        return
    python = f'"$(dirname "$(command -v {shlex.quote(hpcbench)})")/python"'
    names = " ".join(shlex.quote(name) for name in upload.wheels)
    installed = ssh.run(f"cd {remote_path(remote_dir)} && {python} -m pip install --quiet "
                        f"{names} 2>&1")
    if installed.returncode != 0:
        raise config_error(f"installing the plugin wheels on {ssh.host} failed: "
                           f"{installed.stdout.decode(errors='replace').strip()[-2000:]}",
                           ["fix: install them by hand in hpcbench's venv there (`pip install "
                            f"{remote_dir}/plugins/*.whl`), or put the wheels the plugin depends "
                            "on beside it"])


def _parent(data: object, keys: tuple[str, ...]) -> dict | None:
    for key in keys[:-1]:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else None


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    archive.addfile(info, io.BytesIO(data))
