"""Outputs while a session runs: the metrics bus (ZeroMQ PUB with a last-value cache) and the
session's Prometheus endpoint fed from it."""
