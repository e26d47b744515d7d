"""Widgets of the vison app, one a module."""
