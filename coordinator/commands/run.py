"""`hpcbench run`: Run a recipe on this machine with live progress and a final report."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Run a recipe on this machine with live progress and a final report"
configure, run = not_yet("run", 4, "coordinator, aggregator and local runs")
