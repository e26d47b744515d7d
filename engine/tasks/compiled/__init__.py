"""Compiled inner loops (numba). A package of its own: the registry imports every module of
engine/tasks to find the families, and numba (0.3 s to import, 0.3 s to load the machine code)
belongs only in the processes that run work units."""
