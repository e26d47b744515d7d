"""Which task class analyses each test family.

Families without their own analyses yet still get the generic init, check and report.
"""

from __future__ import annotations

import importlib

from .base import AnalysisTask

# family -> module in engine.tasks defining `TASK`, an AnalysisTask subclass
FAMILY_MODULES = {"bias": "bias", "dark": "dark"}


def task_for(family: str) -> AnalysisTask:
    module_name = FAMILY_MODULES.get(family)
    if module_name is None:
        task = AnalysisTask()
        task.family = family
        return task
    module = importlib.import_module(f"engine.tasks.{module_name}")
    return module.TASK()
