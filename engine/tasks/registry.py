"""The analysis families, discovered: every module of engine.tasks that defines `FAMILY`.

Adding a family is adding one such module (docs/results.md, "Adding an analysis"); nothing else
lists the families. The catalogue names a test's family; its sub-tasks, limits and values come
from here.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from functools import cache
from typing import Mapping

from ..campaign.config import Campaign, load_campaign
from ..campaign.limits import FamilySchema, limit_specs
from .base import AnalysisTask
from .contract import contract_problems
from .family import Family


class ContractError(RuntimeError):
    """A family's declaration disagrees with its code (contract.py): a bug to fix before any run."""


class UnknownFamily(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@cache
def families() -> dict[str, Family]:
    """family name -> its declaration, in module order."""
    package = importlib.import_module(__package__)
    found: dict[str, Family] = {}
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__package__}.{module_info.name}")
        declared = getattr(module, "FAMILY", None)
        if isinstance(declared, Family):
            if declared.name != module_info.name:  # family_module finds a family without importing the others
                raise ContractError(f"family {declared.name!r} declared in engine.tasks.{module_info.name}: "
                                    f"a family's module is named after it")
            if declared.name in found:
                raise ContractError(f"family {declared.name!r} declared twice (engine.tasks.{module_info.name})")
            problems = contract_problems(declared)
            if problems:
                raise ContractError("\n".join(problems))
            found[declared.name] = declared
    return found


def family_module(name: str) -> str:
    """The module that declares family `name` (named after it: families() holds every family to
    that), found without importing any: what a worker imports to run the family's units."""
    return f"{__package__}.{name}"


def family(name: str) -> Family:
    try:
        return families()[name]
    except KeyError:
        raise UnknownFamily(f"no analysis family {name!r} (known: {', '.join(families())})") from None


def task_for(name: str) -> AnalysisTask:
    return family(name).task()


def campaign_schema() -> Mapping[str, FamilySchema]:
    """What the campaign checker needs (load_campaign(path, families=...)): sub-tasks and limits."""
    return {name: FamilySchema(f.subtasks, limit_specs(f.limits)) for name, f in families().items()}


def load_campaign_checked(path: str | os.PathLike[str]) -> Campaign:
    """A campaign file checked whole: with its sub-task flags and [limits.<family>] against the
    families' declarations (what every entry point of the engine and the app uses)."""
    return load_campaign(path, families=campaign_schema())
