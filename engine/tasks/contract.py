"""The engine checking itself: does a family's declaration (family.py) agree with its code?

The registry runs this on every family it discovers, so a misspelt sub-task or a limit without a
unit stops the engine at start with the reason, instead of reading as a skipped sub-task in a
night's results. tests/test_family_contract.py adds the documentation check.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

from ..campaign.limits import limit_specs
from .calproducts import PRODUCTS
from .family import ALWAYS, Family


def contract_problems(family: Family) -> list[str]:
    """What in `family`'s declaration does not hold; empty when it is sound."""
    problems = []
    where = f"family {family.name} ({family.task.__module__})"
    for name in ALWAYS:
        if name not in family.subtasks:
            problems.append(f"{where}: sub-task {name!r} missing (every family has {', '.join(ALWAYS)})")
    if len(set(family.subtasks)) != len(family.subtasks):
        problems.append(f"{where}: a sub-task is declared twice: {family.subtasks}")
    for name in family.not_implemented - set(family.subtasks):
        problems.append(f"{where}: {name!r} is listed as not implemented but is not a declared sub-task")
    for name in family.subtasks:
        method = getattr(family.task, name, None)
        if name in family.not_implemented:
            if callable(method):
                problems.append(f"{where}: sub-task {name!r} has code but is declared not implemented")
        elif not callable(method):
            problems.append(f"{where}: sub-task {name!r} is declared but {family.task.__name__} has no method {name}")
        elif len(inspect.signature(method).parameters) < 2:
            problems.append(f"{where}: sub-task {name} must take (self, ctx, ...)")
        else:
            problems += _input_problems(where, name, method)
    try:
        limit_specs(family.limits)
    except TypeError as exc:
        problems.append(f"{where}: {exc}")
    for product in family.needs:
        if product not in PRODUCTS:
            problems.append(f"{where}: needs unknown calibration product {product!r} (known: {', '.join(PRODUCTS)})")
    for product in family.required:
        if product not in family.needs:
            problems.append(f"{where}: requires {product!r} without declaring it in needs")
    names = [spec.name for spec in family.values]
    if len(set(names)) != len(names):
        problems.append(f"{where}: a value is declared twice")
    for spec in family.values:
        if spec.scope not in ("quadrant", "ccd", "test"):
            problems.append(f"{where}: value {spec.name} has scope {spec.scope!r} (quadrant, ccd or test)")
    problems += _consumer_problems(where, family)
    for check in family.checks:
        if len(inspect.signature(check).parameters) != 2:
            problems.append(f"{where}: check {getattr(check, '__name__', check)} must take (ctx, raw_stats)")
    return problems


def _input_problems(where: str, name: str, method) -> list[str]:
    """Each input after ctx must be annotated with a class (the runner passes inputs by type)."""
    try:
        hints = typing.get_type_hints(method)
    except Exception as exc:  # an annotation naming what the module does not import
        return [f"{where}: sub-task {name}: its annotations cannot be resolved ({exc})"]
    problems = []
    for parameter in list(inspect.signature(method).parameters.values())[2:]:
        kind = hints.get(parameter.name)
        if parameter.default is None:
            kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        if not isinstance(kind, type):
            problems.append(f"{where}: sub-task {name}: input {parameter.name} needs a class annotation "
                            "(the result type of an earlier sub-task)")
    return problems


def undocumented_values(family: Family, results_doc: Path) -> list[str]:
    """Values of `family` that the results documentation does not name (as `name` in backticks):
    docs/results.md, or the family's own page docs/results/<family>.md."""
    pages = [results_doc, results_doc.with_suffix("") / f"{family.name}.md"]
    text = "\n".join(page.read_text() for page in pages if page.is_file())
    documented = set(re.findall(r"`([A-Za-z0-9_]+)`", text))
    return [name for name in family.value_specs() if name not in documented]


def _consumer_problems(where: str, family: Family) -> list[str]:
    """A family feeds on the check's read one way (per_band or per_quadrant), names sub-tasks it
    has, and gives the workers a `start` they can import by name (local pool and Dask pickle it)."""
    problems = []
    if family.per_band is not None and family.per_quadrant is not None:
        problems.append(f"{where}: declares both per_band and per_quadrant (the check reads the frames one way)")
    spec = family.per_quadrant
    if spec is None:
        return problems
    for name in set(spec.subtasks) - set(family.subtasks):
        problems.append(f"{where}: per_quadrant names sub-task {name!r}, not one of its sub-tasks")
    qualname = getattr(spec.start, "__qualname__", "")
    if "." in qualname or "<" in qualname:  # a method or a nested function
        problems.append(f"{where}: per_quadrant start {qualname!r} is not module-level: workers cannot import it")
    return problems
