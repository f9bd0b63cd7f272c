"""NVIDIA GPU readings through NVML (nvidia-ml-py, imported as `pynvml`), keyed by GPU UUID."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from hpcbench.monitor.reading import Reading

NO_GPU_LINE = "no NVIDIA GPU visible"


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    handle: Any


class GpuSource:
    """Reads every GPU NVML sees; `open()` returns None (with the reason) when there is none.

    A metric a GPU does not support (NVMLError on that call, e.g. the energy counter on older
    boards) is left out of the reading; the other metrics of that GPU are still reported.
    """

    def __init__(self, nvml: Any, gpus: list[Gpu]) -> None:
        self.nvml = nvml
        self.gpus = gpus

    @classmethod
    def open(cls) -> tuple["GpuSource | None", str]:
        """The source, or None and the reason no GPU is visible (no library, no driver, no GPU)."""
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError as error:
            return None, f"{NO_GPU_LINE} (nvidia-ml-py is not installed: {error})"
        try:
            nvml.nvmlInit()
        except Exception as error:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            return None, f"{NO_GPU_LINE} (NVML did not initialise: {error})"
        try:
            gpus = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                gpus.append(Gpu(index, _text(nvml.nvmlDeviceGetUUID(handle)),
                                _text(nvml.nvmlDeviceGetName(handle)), handle))
        except nvml.NVMLError as error:
            nvml.nvmlShutdown()
            return None, f"{NO_GPU_LINE} (NVML could not list devices: {error})"
        if not gpus:
            nvml.nvmlShutdown()
            return None, f"{NO_GPU_LINE} (NVML found 0 devices)"
        names = ", ".join(f"{gpu.index}: {gpu.name} {gpu.uuid}" for gpu in gpus)
        return cls(nvml, gpus), f"{len(gpus)} NVIDIA GPU(s) visible: {names}"

    def close(self) -> None:
        self.nvml.nvmlShutdown()

    def read(self) -> Reading:
        reading = Reading()
        nvml = self.nvml
        for gpu in self.gpus:
            labels = {"gpu": gpu.uuid, "index": str(gpu.index), "model": gpu.name}
            handle = gpu.handle
            for name, call in (
                ("hpcbench_gpu_utilisation_ratio",
                 lambda handle=handle: nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0),
                ("hpcbench_gpu_memory_used_bytes", lambda handle=handle: nvml.nvmlDeviceGetMemoryInfo(handle).used),
                ("hpcbench_gpu_memory_total_bytes", lambda handle=handle: nvml.nvmlDeviceGetMemoryInfo(handle).total),
                ("hpcbench_gpu_power_watts", lambda handle=handle: nvml.nvmlDeviceGetPowerUsage(handle) / 1e3),
                ("hpcbench_gpu_energy_joules_total",
                 lambda handle=handle: nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3),
                ("hpcbench_gpu_temperature_celsius",
                 lambda handle=handle: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
                ("hpcbench_gpu_sm_clock_hertz",
                 lambda handle=handle: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM) * 1e6),
                ("hpcbench_gpu_memory_clock_hertz",
                 lambda handle=handle: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM) * 1e6),
            ):
                try:
                    reading.add(name, call(), labels)
                except nvml.NVMLError:
                    pass  # not supported on this GPU: leave this one metric out
        return reading


def _text(value: str | bytes) -> str:
    """nvidia-ml-py returns str; older pynvml builds returned bytes."""
    return value.decode() if isinstance(value, bytes) else value
