"""`arpo train`: the training loop (run.py), its setup, checkpoints, distribution over ranks,
metrics and reports."""
