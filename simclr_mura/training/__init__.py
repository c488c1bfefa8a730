"""The trainer: loop and steps, checkpoints, distribution, evaluation, metrics, results, summaries and export."""
