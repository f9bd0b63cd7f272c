"""One module per `hpcbench` verb; see `hpcbench.coordinator.cli`."""
