"""Coordinator: sessions, recipe -> plan, gRPC control, HDR aggregator, metrics bus, results, CLI."""
