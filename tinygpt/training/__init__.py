"""Training: the state, the step and its CUDA graphs, the loop and its periodic actions, optimizers,
schedules, checkpoints and resume, the run directory, metrics and loggers."""
