"""One session from recipe to report: its lifecycle, what it records of each trial, and the
results on disk."""
