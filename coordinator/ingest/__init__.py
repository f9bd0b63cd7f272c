"""Data plane, receiving side: sample and telemetry messages in over ZeroMQ PULL, checked for
gaps and duplicates, aggregated into HDR histograms per interval and cumulative."""
