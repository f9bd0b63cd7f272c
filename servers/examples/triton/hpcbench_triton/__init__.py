"""hpcbench example plugin: NVIDIA Triton Inference Server (TensorRT) as a service."""
__version__ = "0.1.0"
