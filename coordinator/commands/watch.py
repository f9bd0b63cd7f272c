"""`hpcbench watch`: Follow a running session's live metrics."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Follow a running session's live metrics"
configure, run = not_yet("watch", 4, "coordinator metrics bus")
