"""`hpcbench status`: Show the state of running sessions (and their Slurm jobs)."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Show the state of running sessions (and their Slurm jobs)"
configure, run = not_yet("status", 4, "coordinator control API")
