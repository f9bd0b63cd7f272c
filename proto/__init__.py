"""Contracts between hpcbench components: gRPC control plane, sample and telemetry messages."""
