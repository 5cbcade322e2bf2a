"""The multi-objective search: study files, trials (Optuna objective, accuracy cache by
plan), the results database and its queries, and plots."""
