"""Training: the state, the step and its CUDA graphs, the loop and its periodic actions, optimizers,
schedules, checkpoints and resume, the run directory (and removing one a failed command made before
training started: unstarted.py), metrics and loggers, the end-of-run line (summary.py)."""
