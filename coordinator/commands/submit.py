"""`hpcbench submit`: Submit a recipe to Slurm (sbatch --parsable) with options built from the recipe."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Submit a recipe to Slurm (sbatch --parsable) with options built from the recipe"
configure, run = not_yet("submit", 6, "Slurm and Apptainer")
