"""`hpcbench report`: Build the HTML report of a finished run."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Build the HTML report of a finished run"
configure, run = not_yet("report", 8, "reports")
