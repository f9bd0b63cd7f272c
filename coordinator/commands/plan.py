"""`hpcbench plan`: Show the trials and the node roles a recipe gives for a node count."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Show the trials and the node roles a recipe gives for a node count"
configure, run = not_yet("plan", 2, "foundation: recipes and CLI")
