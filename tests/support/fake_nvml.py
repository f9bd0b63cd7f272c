"""fake_nvml: a TEST DOUBLE for `pynvml` (nvidia-ml-py), because no NVIDIA GPU exists here.

It implements only the NVML calls hpcbench.monitor.gpu makes, with the same names, units
(mW, mJ, MHz, bytes, percent) and error style (NVMLError subclasses), over GPUs the test
describes. Install it with `install(monkeypatch, gpus)`, which puts it in sys.modules["pynvml"].
"""
from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    def __str__(self) -> str:
        return "Not Supported"


class NVMLError_LibraryNotFound(NVMLError):
    def __str__(self) -> str:
        return "NVML Shared Library Not Found"


@dataclass
class FakeGpu:
    """One simulated GPU; tests change fields between samples (e.g. add energy)."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3 (fake_nvml)"
    util_percent: int = 50
    memory_used: int = 10 * 2**30
    memory_total: int = 80 * 2**30
    power_mw: int = 300_000
    energy_mj: int | None = 1_000_000   # None: counter not supported by this "board"
    temperature_c: int = 60
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    unsupported: set[str] = field(default_factory=set)


def build(gpus: list[FakeGpu], library_present: bool = True) -> types.ModuleType:
    """A module object that behaves like `pynvml` for these GPUs."""
    module = types.ModuleType("pynvml")
    module.__doc__ = "fake_nvml test double"
    module.NVMLError = NVMLError
    module.NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    module.NVML_CLOCK_SM = NVML_CLOCK_SM
    module.NVML_CLOCK_MEM = NVML_CLOCK_MEM
    module.initialised = False

    def init() -> None:
        if not library_present:
            raise NVMLError_LibraryNotFound()
        module.initialised = True

    def shutdown() -> None:
        module.initialised = False

    def gpu(handle: FakeGpu, call: str) -> FakeGpu:
        if not module.initialised:
            raise NVMLError("Uninitialized")
        if call in handle.unsupported:
            raise NVMLError_NotSupported()
        return handle

    def energy(handle: FakeGpu) -> int:
        if gpu(handle, "energy").energy_mj is None:
            raise NVMLError_NotSupported()
        return handle.energy_mj

    def clock(handle: FakeGpu, kind: int) -> int:
        gpu(handle, "clock")
        return handle.sm_clock_mhz if kind == NVML_CLOCK_SM else handle.mem_clock_mhz

    module.nvmlInit = init
    module.nvmlShutdown = shutdown
    module.nvmlDeviceGetCount = lambda: len(gpus)
    module.nvmlDeviceGetHandleByIndex = lambda index: gpus[index]
    module.nvmlDeviceGetUUID = lambda handle: gpu(handle, "uuid").uuid
    module.nvmlDeviceGetName = lambda handle: gpu(handle, "name").name
    module.nvmlDeviceGetUtilizationRates = lambda handle: types.SimpleNamespace(
        gpu=gpu(handle, "util").util_percent, memory=0)
    module.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(
        used=gpu(handle, "memory").memory_used, total=handle.memory_total,
        free=handle.memory_total - handle.memory_used)
    module.nvmlDeviceGetPowerUsage = lambda handle: gpu(handle, "power").power_mw
    module.nvmlDeviceGetTotalEnergyConsumption = energy
    module.nvmlDeviceGetTemperature = lambda handle, sensor: gpu(handle, "temperature").temperature_c
    module.nvmlDeviceGetClockInfo = clock
    return module


def install(monkeypatch, gpus: list[FakeGpu], library_present: bool = True) -> types.ModuleType:
    """Make `import pynvml` return the fake for the rest of the test."""
    module = build(gpus, library_present)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


SITECUSTOMIZE = '''\
"""fake_nvml for a child process: makes `import pynvml` see {count} fake GPU(s)."""
import sys
sys.path.insert(0, {support!r})
import fake_nvml
sys.modules["pynvml"] = fake_nvml.build(
    [fake_nvml.FakeGpu(uuid=f"GPU-fake-{{index}}") for index in range({count})])
'''


def child_env(env: dict, directory, count: int = 2) -> dict:
    """Environment for a child process whose `pynvml` is this fake (via sitecustomize.py)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        SITECUSTOMIZE.format(count=count, support=str(Path(__file__).parent)))
    return dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(directory),
                                                                env.get("PYTHONPATH")])))
