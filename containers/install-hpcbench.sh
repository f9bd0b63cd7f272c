#!/bin/sh
# Install hpcbench and the plugin wheels (WHEELS/top/*.whl, in one resolution: a plugin may need
# another's wheel) with their dependencies (WHEELS/deps) into /opt/hpcbench/venv, offline, and
# put its commands and its Python (as python and python3, so a plugin's server started with
# `python3 -m ...` finds its package) first on PATH. base.def's %post runs it, under Apptainer
# and podman alike.
set -eu
wheels=$1
python3 -m venv /opt/hpcbench/venv
/opt/hpcbench/venv/bin/pip install --no-cache-dir --no-index --find-links "$wheels/deps" \
    "$wheels"/top/*.whl
ln -sf /opt/hpcbench/venv/bin/hpcbench* /usr/local/bin/
# (scripts, not links: a venv's Python is only itself when started by its own path)
for name in python python3; do
    printf '#!/bin/sh\nexec /opt/hpcbench/venv/bin/python "$@"\n' > /usr/local/bin/$name
    chmod 755 /usr/local/bin/$name
done
