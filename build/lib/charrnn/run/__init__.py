"""One training run: the training loop, the run lifecycle in MLflow, checkpoints, and sampling."""
