"""Where a session's components run: node roles (plan), the launchers (local processes, srun
steps) behind one interface, child-process supervision, and the Slurm job body of run.sbatch."""
