"""`hpcbench create`: Create a recipe interactively (or from flags)."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Create a recipe interactively (or from flags)"
configure, run = not_yet("create", 2, "foundation: recipes and CLI")
