"""`hpcbench validate`: Check a recipe and list every problem with its path."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Check a recipe and list every problem with its path"
configure, run = not_yet("validate", 2, "foundation: recipes and CLI")
