#!/usr/bin/env python3
"""Build hpcbench's images with podman from the Apptainer definition files (base.def,
coordinator.def, executor.def, monitor.def), so one definition per component serves both.

`make images` runs this where Apptainer is absent and podman is installed. Each .def becomes a
Containerfile: `Bootstrap: debootstrap` a Debian root made with `debootstrap --variant=minbase
--include=INCLUDE` (kept as a tarball in the cache and imported as localhost/hpcbench-debian),
`Bootstrap: localimage` of hpcbench-X.sif the image localhost/hpcbench-X, %files COPY, %post one
RUN of the whole script, %environment's `export` lines ENV, %labels LABEL, %runscript's
`exec PROGRAM "$@"` the ENTRYPOINT; `{{ NAME }}` takes the %arguments defaults or the given
--build-arg values, as Apptainer does. After each build the image's %test runs in it.
A section or header the translation does not know is an error, never silently dropped.

(spython's converter was tried: 0.3.14 reads only `Bootstrap: docker`, splits %post into one RUN
per line, which breaks multi-line shell, and does not fill `{{ }}` arguments.)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

KNOWN_HEADERS = {"Bootstrap", "From", "OSVersion", "MirrorURL", "Include"}
KNOWN_SECTIONS = {"arguments", "files", "post", "environment", "labels", "runscript", "test"}
RUNSCRIPT = re.compile(r'^exec (\S+) "\$@"$')
EXPORT = re.compile(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(\S*)$")


class DefinitionError(Exception):
    """A definition file this translation cannot express faithfully."""


def parse(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, sections) of an Apptainer definition file; comments and blank lines dropped."""
    headers: dict[str, str] = {}
    parts = re.split(r"^%(\w+)[ \t]*$", text, flags=re.M)
    for line in parts[0].splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(":")
            if key not in KNOWN_HEADERS:
                raise DefinitionError(f"header {key!r} is not supported")
            headers[key] = value.strip()
    sections = {name: body.strip("\n") for name, body in zip(parts[1::2], parts[2::2])}
    unknown = set(sections) - KNOWN_SECTIONS
    if unknown:
        raise DefinitionError(f"section(s) {sorted(unknown)} not supported")
    return headers, sections


def lines(body: str) -> list[str]:
    return [line.strip() for line in body.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def fill(text: str, arguments: dict[str, str]) -> str:
    """Apptainer's `{{ NAME }}` templating."""
    def value(match: re.Match) -> str:
        if match.group(1) not in arguments:
            raise DefinitionError(f"{{{{ {match.group(1)} }}}} has no value")
        return arguments[match.group(1)]
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", value, text)


def image_name(sif: str, version: str) -> str:
    """localhost/hpcbench-X:VERSION for hpcbench-X.sif."""
    return f"localhost/{Path(sif).name.removesuffix('.sif')}:{version}"


def debian_base(headers: dict[str, str]) -> tuple[str, list[str]]:
    """(image name, debootstrap argv minus the target dir) for a debootstrap header; the name
    carries a hash of the arguments, so a changed package list builds a new root."""
    argv = ["debootstrap", "--variant=minbase"]
    include = headers.get("Include", "").split()
    if include:
        argv.append("--include=" + ",".join(include))
    argv += [headers["OSVersion"], "{root}", headers.get("MirrorURL",
                                                            "http://deb.debian.org/debian")]
    tag = hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:12]
    return f"localhost/hpcbench-debian:{headers['OSVersion']}-{tag}", argv


def containerfile(text: str, build_args: dict[str, str], version: str) -> tuple[str, list[str]]:
    """(Containerfile, %test lines) for one definition file."""
    headers, sections = parse(text)
    arguments = dict(line.split("=", 1) for line in lines(sections.get("arguments", "")))
    arguments.update(build_args)
    bootstrap = headers.get("Bootstrap")
    if bootstrap == "debootstrap":
        base = debian_base(headers)[0]
    elif bootstrap == "localimage":
        base = image_name(headers["From"], version)
    else:
        raise DefinitionError(f"Bootstrap: {bootstrap} is not supported (debootstrap or "
                              "localimage)")
    out = [f"FROM {base}"]
    for line in lines(fill(sections.get("files", ""), arguments)):
        source, destination = line.split()
        out.append(f"COPY {source} {destination}")
    if "post" in sections:
        script = fill(sections["post"], arguments)
        out.append("RUN " + json.dumps(["/bin/sh", "-ec", script]))
    for line in lines(sections.get("environment", "")):
        match = EXPORT.match(line)
        if not match:
            raise DefinitionError(f"%environment line {line!r}: only `export NAME=VALUE`")
        out.append(f"ENV {match.group(1)}={json.dumps(match.group(2))}")
    for line in lines(fill(sections.get("labels", ""), arguments)):
        key, _, value = line.partition(" ")
        out.append(f"LABEL {json.dumps(key)}={json.dumps(value.strip())}")
    if "runscript" in sections:
        match = RUNSCRIPT.match(sections["runscript"].strip())
        if not match:
            raise DefinitionError('%runscript must be `exec PROGRAM "$@"`')
        out.append("ENTRYPOINT " + json.dumps([match.group(1)]))
    return "\n".join(out) + "\n", lines(sections.get("test", ""))


def podman(*argv: str, **options) -> subprocess.CompletedProcess:
    print("+ podman " + shlex.join(argv), flush=True)
    return subprocess.run(["podman", *argv], check=True, **options)


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name]).returncode == 0


def ensure_debian(headers: dict[str, str], cache: Path) -> None:
    """Import the Debian root for the base image; debootstrap it into the cache first if the
    cache has no tarball of it yet."""
    name, argv = debian_base(headers)
    if image_exists(name):
        return
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / (name.rpartition("/")[2].replace(":", "-") + ".tar")
    if not tarball.exists():
        with tempfile.TemporaryDirectory(dir=cache) as root:
            command = [root if part == "{root}" else part for part in argv]
            print("+ " + shlex.join(command), flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", root, "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
    podman("import", str(tarball), name, stdout=subprocess.DEVNULL)


def build(component: str, context: Path, build_args: dict[str, str], version: str,
          cache: Path) -> str:
    definition = context / f"{component}.def"
    text = definition.read_text()
    headers, _ = parse(text)
    if headers.get("Bootstrap") == "debootstrap":
        ensure_debian(headers, cache)
    recipe, tests = containerfile(text, build_args, version)
    name = image_name(f"hpcbench-{component}.sif", version)
    with tempfile.NamedTemporaryFile("w", suffix=".Containerfile", dir=context) as file:
        file.write(recipe)
        file.flush()
        podman("build", "--network", "none", *limit_flags(), "--file", file.name,
               "--tag", name, str(context))
    for test in tests:
        podman("run", "--rm", "--network", "none", *limit_flags(), "--entrypoint", "/bin/sh",
               name, "-ec", test, stdout=subprocess.DEVNULL)
    return name


def limit_flags() -> list[str]:
    """The same `--ulimit` flags the podman runtime uses (a build's RUN is a container too)."""
    from hpcbench.servers.runtime import limit_flags as runtime_limits
    return runtime_limits()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("components", nargs="+", help="base first, then the others")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--cache", type=Path, required=True,
                        help="where the Debian root tarball is kept between builds")
    args = parser.parse_args(argv)
    build_args = dict(item.split("=", 1) for item in args.build_arg)
    version = build_args.get("VERSION", "0.0.0")
    context = Path(__file__).resolve().parent
    try:
        built = [build(c, context, build_args, version, args.cache) for c in args.components]
    except DefinitionError as error:
        print(f"make images: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"make images: `{shlex.join(error.cmd)}` failed ({error.returncode})",
              file=sys.stderr)
        return 1
    print("make images: built OCI images with podman (Apptainer is not installed): "
          + " ".join(built))
    return 0


if __name__ == "__main__":
    sys.exit(main())
