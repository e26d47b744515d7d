"""Runs of the calibration pipeline: aim, wait and check modes, logs, results, run records."""
