"""`hpcbench stop`: Stop a running session gracefully, keeping everything measured."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Stop a running session gracefully, keeping everything measured"
configure, run = not_yet("stop", 4, "coordinator control API")
