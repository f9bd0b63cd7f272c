"""Monitor: node, GPU (NVML) and inference-server telemetry."""
