"""Performance limits as typed configs: each limit a dataclass field with its unit, default and meaning.

The generic raw-data checks every test runs use `GenericLimits` (the campaign's `[limits]`). An
analysis family declares its own limits as a subclass (in its module under engine/tasks), which
the campaign may override in `[limits.<family>]`. A task sees one frozen instance, resolved
default <- `[limits]` <- `[limits.<family>]`, and reads attributes, never strings:

    @dataclass(frozen=True)
    class PTCLimits(GenericLimits):
        gain_e_per_adu: tuple[float, float] = limit((3.1, 3.5), "e-/ADU", "PTC gain")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

Range = tuple[float, float]
LimitValue = float | Range


@dataclass(frozen=True)
class LimitSpec:
    """One limit a campaign may override: a number or a [low, high] range, with its unit."""

    name: str
    unit: str
    default: LimitValue
    meaning: str

    @property
    def kind(self) -> str:
        return "range" if isinstance(self.default, tuple) else "number"

    def example(self) -> str:
        if isinstance(self.default, tuple):
            return f"{self.name} = [{self.default[0]:g}, {self.default[1]:g}]"
        return f"{self.name} = {self.default:g}"

    def parse(self, value: Any) -> tuple[LimitValue | None, str | None]:
        """(the value as this limit holds it, None) or (None, what was expected)."""
        if self.kind == "number":
            if _is_number(value):
                return float(value), None
            return None, f"a number ({self.unit}), e.g. {self.example()}"
        if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
            if value[0] > value[1]:
                return None, f"[low, high] with low <= high ({self.unit}); the range is reversed"
            return (float(value[0]), float(value[1])), None
        return None, f"a range [low, high] ({self.unit}), e.g. {self.example()}"


def limit(default: LimitValue, unit: str, meaning: str) -> Any:
    """A limit field of a limits dataclass."""
    return dataclasses.field(default=default, metadata={"unit": unit, "meaning": meaning})


def limit_specs(limits_class: type) -> dict[str, LimitSpec]:
    """name -> LimitSpec of every field of a limits dataclass, in declaration order."""
    specs = {}
    for item in dataclasses.fields(limits_class):
        if "unit" not in item.metadata:
            raise TypeError(f"{limits_class.__name__}.{item.name} has no unit: declare it with limit()")
        specs[item.name] = LimitSpec(item.name, item.metadata["unit"], item.default, item.metadata["meaning"])
    return specs


def resolve_limits(limits_class: type, campaign_wide: Mapping[str, LimitValue],
                   family: Mapping[str, LimitValue]) -> Any:
    """The frozen limits a task sees: defaults <- the campaign's [limits] <- [limits.<family>].

    Both mappings hold values already validated by the campaign checker; names that the class
    does not declare (another family's limits in [limits]) are ignored here."""
    names = limit_specs(limits_class)
    chosen = {name: value for name, value in campaign_wide.items() if name in names}
    unknown = [name for name in family if name not in names]
    if unknown:  # the campaign was loaded without the families' schema: say it here
        raise KeyError(f"unknown limit(s) {', '.join(unknown)} in [limits.<family>] "
                       f"(known: {', '.join(names)})")
    chosen.update(family)
    return limits_class(**chosen)


@dataclass(frozen=True)
class GenericLimits:
    """Limits of the raw-data checks every test runs (vison's image/performance.py and SATUR)."""

    offset_nominal_adu: float = limit(2800.0, "ADU", "nominal offset when the block has no [offsets] table")
    offset_margin_adu: float = limit(50.0, "ADU", "allowed offset deviation from the nominal")
    offset_gradient_adu: Range = limit((-10.0, 10.0), "ADU", "image/overscan minus prescan offset")
    ron_adu: Range = limit((0.86, 1.44), "ADU", "read noise (std of prescan/overscan)")
    saturation_fraction: float = limit(0.10, "fraction of pixels", "largest fraction of saturated pixels in a frame")


@dataclass(frozen=True)
class FamilySchema:
    """What the campaign checker needs to know of an analysis family: its sub-tasks and limits.

    Built by engine.tasks.registry.campaign_schema() and handed to load_campaign; the campaign
    layer never imports the tasks."""

    subtasks: tuple[str, ...]
    limits: Mapping[str, LimitSpec]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
