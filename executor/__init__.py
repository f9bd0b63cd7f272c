"""Executor: load generator (schedules, datasets, protocol clients) streaming latency samples."""
