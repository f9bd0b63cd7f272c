#!/bin/sh
# Install hpcbench and the plugin wheels (WHEELS/top/*.whl, in one resolution: a plugin may need
# another's wheel) with their dependencies (WHEELS/deps) into VENV (/opt/hpcbench/venv), offline,
# and put its commands and its Python (as python and python3, so a plugin's server started with
# `python3 -m ...` finds its package) into BIN (/usr/local/bin), first on PATH. base.def's %post
# runs it, under Apptainer and podman alike.
set -eu
wheels=$1
venv=${2:-/opt/hpcbench/venv}
bin=${3:-/usr/local/bin}
python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --no-index --find-links "$wheels/deps" \
    "$wheels"/top/*.whl
ln -sf "$venv"/bin/hpcbench* "$bin/"
# (scripts, not links: a venv's Python is only itself when started by its own path)
for name in python python3; do
    printf '#!/bin/sh\nexec %s/bin/python "$@"\n' "$venv" > "$bin/$name"
    chmod 755 "$bin/$name"
done
