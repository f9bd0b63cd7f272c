# hpcbench: every user-facing task is one make target (README "Two commands").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages that the integration suites need (virtual Slurm cluster, Prometheus,
# Pushgateway, Redis, headless Chromium for report screenshots, network namespaces).
SYSTEM_PACKAGES := slurm-wlm munge prometheus prometheus-pushgateway redis-server chromium iproute2 procps

.PHONY: setup system-deps test demo bench proto wheel images clean help

help:
	@echo "make demo    run a local benchmark against the built-in simulator"
	@echo "make test    install everything needed and run the test suite"
	@echo "make setup   create .venv/ with hpcbench (editable) and its dev tools"
	@echo "make bench   print hpcbench's own speed and memory figures as JSON"
	@echo "make proto   regenerate the gRPC/protobuf code from proto/*.proto"
	@echo "make wheel   build dist/hpcbench-*.whl (used by the container images)"
	@echo "make images  build the Apptainer images (needs apptainer)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@$(PYTHON) tests/support/system_deps.py $(SYSTEM_PACKAGES)

test: setup system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/hpcbench run recipes/examples/local-sim.yaml

bench: setup
	$(BIN)/python tests/bench/run.py

proto: setup
	$(BIN)/python -m hpcbench.proto.build

wheel: setup
	$(BIN)/python -m build --wheel --outdir dist .

images: wheel
	@command -v apptainer >/dev/null 2>&1 || { echo "make images: apptainer is not installed. Install Apptainer (https://apptainer.org/docs/admin/main/installation.html) or 'module load Apptainer' on your cluster, then run 'make images' again."; exit 2; }
	$(MAKE) -C containers images

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
