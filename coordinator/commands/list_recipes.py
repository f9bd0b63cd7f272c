"""`hpcbench list`: List the recipes in a folder with scenario, service and trial count."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "List the recipes in a folder with scenario, service and trial count"
configure, run = not_yet("list", 2, "foundation: recipes and CLI")
