"""The contract of an analysis family: what one module under engine/tasks declares.

A family module defines `FAMILY = Family(...)`: its sub-tasks in order (those without code yet
listed as `not_implemented`), its limits as a typed config (engine.campaign.limits), the values
it writes to result.json (name, unit, precision, meaning; `key` ones the app shows first), the
raw-data checks it adds to the generic ones, whether its frames are meant to saturate, and the
calibration products it needs. The registry (registry.py) discovers the modules; the contract
test (tests/test_family_contract.py) checks every declaration against the code and the docs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..campaign.limits import GenericLimits

if TYPE_CHECKING:  # the task machinery imports this module
    import numpy as np

    from ..formats.geometry import CCDGeometry
    from .base import AnalysisTask
    from .context import TaskContext
    from .measures import QuadrantStats

ALWAYS = ("init", "check", "report")  # every family has them: ingestion, raw-data checks, the report
# Per-CCD values ("ccd" scope) sit beside the quadrants: ccds -> CCDn -> CCD_KEY -> name.
CCD_KEY = "CCD"
CHECK_ONLY_SUBTASKS = frozenset({"init", "check", "lock", "report"})  # what a check-only run (-k) runs


@dataclass(frozen=True)
class ValueSpec:
    """A value a family writes to result.json, per quadrant (`ccds -> CCDn -> Q`), per CCD
    (`ccds -> CCDn -> CCD`; the block's combination of a per-CCD value may also go in `values`
    under the same name) or for the test (`values`)."""

    name: str
    unit: str  # "" for a count or a text
    precision: int | None  # decimals kept in result.json; None: not rounded (counts, texts)
    meaning: str
    key: bool = False  # one of the family's key figures: the app shows these first
    scope: str = "quadrant"  # "quadrant" | "ccd" | "test"

    def round(self, value: Any) -> Any:
        """The value as result.json stores it: rounded to the declared precision; NaN stays NaN."""
        if hasattr(value, "item") and callable(value.item):  # numpy scalar
            value = value.item()
        if self.precision is None or not isinstance(value, float) or not math.isfinite(value):
            return value
        return round(value, self.precision)

    def format(self, value: Any) -> str:
        """The value as a user reads it (report, app): its precision, NaN and missing said."""
        return format_value(value, self.precision)


def format_value(value: Any, precision: int | None = None) -> str:
    """One formatter for values everywhere: the declared decimals when known, else 7 significant
    figures (a 16-bit offset to 0.01 ADU, a RON to 0.001 ADU); NaN and missing say so."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, (list, tuple)):
            return ", ".join(format_value(v, precision) for v in value)
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, int):
        return str(value)
    if precision is not None:
        return f"{value:.{precision}f}"
    return f"{value:.7g}"


class UndeclaredValue(KeyError):
    """A value written that the family does not declare: the contract is broken (a bug)."""

    def __str__(self) -> str:
        return str(self.args[0])


CheckFunction = Callable[["TaskContext", Any], None]  # (ctx, the generic check's RawStats) -> flags raised


@dataclass(frozen=True)
class StackSpec:
    """A per-CCD stack (a master) built from the one pass over the frames (stacking.py): the
    per-pixel median of the offset-subtracted frames and their spread, one product per CCD."""

    kind: str  # product kind in its file name: EUC_<kind>_CCD<n>_SN_<serial>_<BLOCK>.fits
    extnames: tuple[str, str]  # extension names of the median and of the spread
    spread: str  # "std" of the frames, or "error" of the median (std / sqrt(n))
    hot_threshold_adu: float | None = None  # list pixels this far above the quadrant's level
    subtasks: tuple[str, ...] = ("meta",)  # the sub-tasks that use it: the pass stacks if one will run


@dataclass(frozen=True)
class BandConsumers:
    """What a family takes from each quadrant band of each frame, besides the check's per-frame
    measurements (bandpass.py): the runner reads each band of each frame once and feeds them all,
    memory bounded by the band size. Families that declare nothing get the per-frame measurements
    only (one work unit per frame)."""

    noise: tuple[str, ...] = ()  # sub-tasks using the read-noise histograms and row/column profiles
    stack: StackSpec | None = None

    def wanted(self, enabled: frozenset[str] | set[str] | None) -> tuple[bool, StackSpec | None]:
        """(noise, stack) the sub-tasks about to run will use (`enabled` None: all of them)."""
        def used(names: tuple[str, ...]) -> bool:
            return enabled is None or any(name in enabled for name in names)
        return bool(self.noise) and used(self.noise), self.stack if self.stack and used(self.stack.subtasks) else None


class QuadrantConsumer(Protocol):
    """Made in a worker by `QuadrantConsumers.start`; fed each readable frame of its (CCD,
    quadrant) in OBSID order."""

    def add(self, index: int, counts: np.ndarray, stats: "QuadrantStats") -> None:
        """Frame `index` of the unit's list: its quadrant's counts (uint16, as read: frame
        orientation, geometry.flips(quadrant) says how to view it canonically) and the check's
        statistics of them (the prescan's clipped mean is the frame's offset). The counts are a
        fresh array for each frame, never reused by the pass: a consumer may keep them (a pair's
        first frame, pumped frames replayed at the end) without copying."""

    def result(self) -> Any:
        """What the family's sub-tasks take (small and picklable: numbers, tables, paths)."""


@dataclass(frozen=True)
class QuadrantConsumers:
    """What a family takes from each quadrant of each frame in the read that makes the check's
    measurements (readout.py): one work unit per (CCD, quadrant) reads each frame's quadrant once,
    measures it and hands it to the family's consumer, so a family's extraction (PTC pairs, trap
    dipoles, flat normalisation) costs no second read of the frames. Memory: what the consumer
    keeps (a pair, a reference frame), never the frame count."""

    # main process, per CCD: (ctx, ccd, the CCD's frames on disk in OBSID order, as the unit gets
    # them) -> the consumer's picklable plan (pairs by index, modes...); None: nothing to consume
    plan: Callable[["TaskContext", int, list[Any]], Any]
    # worker: (quadrant, the first frame's geometry, plan) -> a QuadrantConsumer; module-level
    start: Callable[[str, "CCDGeometry", Any], QuadrantConsumer]
    subtasks: tuple[str, ...]  # the sub-tasks that use it: the pass feeds it if one of them will run

    def wanted(self, enabled: frozenset[str] | set[str] | None) -> bool:
        return enabled is None or any(name in enabled for name in self.subtasks)


@dataclass(frozen=True)
class Family:
    name: str
    summary: str  # one line: what the family measures
    subtasks: tuple[str, ...]  # in running order
    task: type["AnalysisTask"]
    limits: type = GenericLimits  # a frozen dataclass of limit() fields (engine.campaign.limits)
    values: tuple[ValueSpec, ...] = ()  # besides GENERIC_VALUES (a value of the same name replaces it)
    checks: tuple[CheckFunction, ...] = ()  # raw-data checks added to the generic ones, in order
    saturation_expected: bool = False  # frames meant to saturate (no SATURATION flag for them)
    # regions whose noise the generic check holds to the RON limits: after an illuminated or
    # injected image the serial overscan carries the charge its transfer left behind, not noise
    noise_regions: tuple[str, ...] = ("prescan", "overscan")
    needs: tuple[str, ...] = ()  # calibration products (calproducts.PRODUCTS) the analyses use
    required: tuple[str, ...] = ()  # of `needs`: without it the results are flagged (MISSCALPROD)
    not_implemented: frozenset[str] = field(default_factory=frozenset)  # declared, no code yet
    per_band: BandConsumers | None = None  # what its sub-tasks take from the one pass over the frames
    per_quadrant: QuadrantConsumers | None = None  # ... or from each frame's quadrants as the check reads them
    # the run's process writes FITS products (masters, masks, catalogues): it imports astropy while
    # the units run (runner.warm_up) rather than when the products are written, after them
    fits_products: bool = False

    def value_specs(self) -> dict[str, ValueSpec]:
        """Every value the family may write: the generic check's, then its own (replacing by name)."""
        specs = {spec.name: spec for spec in GENERIC_VALUES}
        specs.update({spec.name: spec for spec in self.values})
        return specs

    def key_values(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.values if spec.key)

    @property
    def implemented(self) -> tuple[str, ...]:
        return tuple(name for name in self.subtasks if name not in self.not_implemented)


# Values the generic check writes for every test (check.py), overridden by name where a family
# measures them better (the bias family's offsets are clipped means over all frames, to 0.1 mADU).
GENERIC_VALUES: tuple[ValueSpec, ...] = (
    ValueSpec("offset_prescan_adu", "ADU", 3, "prescan offset: median over frames of each frame's prescan median"),
    ValueSpec("offset_overscan_adu", "ADU", 3, "overscan offset: median over frames of each frame's overscan median"),
    ValueSpec("ron_prescan_adu", "ADU", 4, "prescan noise: median over frames of each frame's prescan robust std"),
    ValueSpec("ron_overscan_adu", "ADU", 4, "overscan noise: median over frames of each frame's overscan robust std"),
    ValueSpec("hk_missing_obsids", "", None, "OBSIDs without an HK file (HK not checked there)", scope="test"),
    ValueSpec("calproducts", "", None, "calibration products used: kind -> source, path, run, OBSIDs", scope="test"),
)
