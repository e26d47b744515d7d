"""Analyses: one module per test family, each a task running its sub-tasks in order."""
