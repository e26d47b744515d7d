"""`vison-engine`: the plain command line over the engine, for scripts and batch use."""

from .main import main

__all__ = ["main"]
