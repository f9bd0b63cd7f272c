"""hpcbench example plugin: the KServe v2 inference protocol (client) and a small server."""
__version__ = "0.1.0"
