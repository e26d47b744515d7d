"""Simulated HK: one file per exposure, one sample a second during the readout.

Readings sit at the middle of their performance limits (commanded voltages for relative keys)
with a little noise, except where an excursion is injected on request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

import numpy as np

from ..formats.hk import INTERNAL_KEYS
from ..formats.hklimits import HKLimits

SAMPLES_PER_EXPOSURE = 71  # one a second through a full-frame readout
_NOISE_FRACTION = 0.02  # of the performance window: visible in sparklines, never out of limits


@dataclass(frozen=True)
class HKExcursion:
    """An out-of-limit reading injected into the HK file of one exposure."""

    key: str
    value: float
    obsid: int
    samples: int = 10  # consecutive samples in the middle of the file

    @classmethod
    def parse(cls, text: str) -> "HKExcursion":
        """`KEY=VALUE@OBSID`, e.g. `CCD1_TEMP_T=-246@1003`."""
        match = re.fullmatch(r"\s*([A-Za-z0-9_.+-]+)\s*=\s*([-+0-9.eE]+)\s*@\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"HK excursion {text!r}: expected KEY=VALUE@OBSID, e.g. CCD1_TEMP_T=-246@1003")
        key, value, obsid = match.groups()
        if key not in INTERNAL_KEYS:
            raise ValueError(f"HK excursion {text!r}: unknown HK key {key!r}")
        return cls(key, float(value), int(obsid))


def hk_samples(
    limits: HKLimits,
    commanded: Mapping[str, Any],
    end: datetime,
    rng: np.random.Generator,
    excursions: list[HKExcursion] = (),  # type: ignore[assignment]
    samples: int = SAMPLES_PER_EXPOSURE,
) -> tuple[list[datetime], dict[str, np.ndarray]]:
    """Times and readings of every HK key for one exposure ending at `end`."""
    times = [end - timedelta(seconds=samples - 1 - i) for i in range(samples)]
    values: dict[str, np.ndarray] = {}
    for key in INTERNAL_KEYS:
        nominal = limits.nominal(key, commanded) if key in limits else None
        if nominal is None:
            nominal = 0.0
        spread = _noise(limits, key, commanded)
        series = np.full(samples, nominal, dtype=float)
        if spread > 0:
            series += rng.normal(0.0, spread, samples)
        values[key] = series
    for excursion in excursions:
        start = max(0, samples // 2 - excursion.samples // 2)
        values[excursion.key][start:start + excursion.samples] = excursion.value
    return times, values


def _noise(limits: HKLimits, key: str, commanded: Mapping[str, Any]) -> float:
    if key not in limits:
        return 0.0
    limit = limits.limit(key, "P")
    if limit.kind == "I" or limit.lo is None or limit.hi is None:
        return 0.0
    return _NOISE_FRACTION * (float(limit.hi) - float(limit.lo)) / 2
