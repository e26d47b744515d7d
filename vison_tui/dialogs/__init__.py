"""Modal dialogs, one a module."""
