"""Calibration products a task takes as inputs, and where each came from.

A family declares the products it needs (`Family.needs`: gain, master_bias, master_flat,
cosmetics_mask). Each is taken from the campaign's `[calproducts]` (a value or a file) first,
else from the newest result of the test that produces it under the results root (PTC for the
gain, BIAS01/02 for the master bias, FLAT for master flats, COSMETICS00 for the mask), else the
nominal is used (the gain) or the step goes without (files). Where each came from (path, run,
OBSIDs) goes into result.json (`values.calproducts`) and the report; a product the family marks
`required` that had to fall back raises MISSCALPROD once, with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..campaign.config import Campaign

NOMINAL_GAIN_E_PER_ADU = 3.3  # CCD273 gains are 3.1-3.5 e-/ADU; used until a PTC gain is known

# kind -> (families whose results produce it, what it is)
PRODUCTS: dict[str, tuple[tuple[str, ...], str]] = {
    "gain": (("ptc",), "gain per CCD and quadrant (e-/ADU)"),
    "master_bias": (("bias",), "master bias per CCD (FITS)"),
    "master_flat": (("flat",), "master flat per CCD and wavelength (FITS)"),
    "cosmetics_mask": (("cosmetics",), "cosmetics mask per CCD (FITS)"),
}
# tests of a producing family whose products are not calibrations: FLAT_STB's 15 flats at one
# fluence check the lamp's stability; FLAT01/FLAT02's master flats are the ones to apply
NOT_PRODUCING_TESTS: dict[str, frozenset[str]] = {"master_flat": frozenset({"FLAT_STB"})}
_PRODUCING_FAMILIES = {family for families, _ in PRODUCTS.values() for family in families}
_PRODUCT_PREFIX = {"master_bias": "EUC_MASTERBIAS_", "master_flat": "EUC_FF_", "cosmetics_mask": "EUC_MASK_"}


@dataclass(frozen=True)
class ProductSource:
    """Where a calibration product came from, as result.json and the report say it."""

    kind: str
    origin: str  # "campaign" | "result" | "nominal" | "none"
    description: str
    path: str | None = None  # the campaign file, or the producing result.json
    run: str | None = None  # the producing run's id
    test: str | None = None  # the producing test
    obsids: list[int] | None = None

    @property
    def fallback(self) -> bool:
        return self.origin in ("nominal", "none")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class _Result:
    test: str
    path: Path
    record: dict[str, Any]

    def source(self, kind: str) -> ProductSource:
        record = self.record
        obsids = record.get("obsids")
        span = f", OBSIDs {obsids[0]}-{obsids[1]}" if obsids else ""
        run = record.get("run_id")
        return ProductSource(kind, "result", f"{self.test} result of {record.get('finished', '?')}"
                             f"{f' (run {run})' if run else ''}{span}: {self.path}",
                             path=str(self.path), run=run, test=self.test, obsids=obsids)


class CalibrationInputs:
    """The calibration products of one task, resolved on first use."""

    def __init__(self, campaign: Campaign, results_root: Path | None = None):
        self.campaign = campaign
        self.results_root = results_root if results_root is not None else campaign.paths.results

    # -- gain -----------------------------------------------------------------------------------

    def gain(self, ccd: int, quadrant: str) -> tuple[float, str]:
        """(gain in e-/ADU, where it comes from)."""
        configured = (self.campaign.calproducts.gains or {}).get(f"CCD{ccd}", {}).get(quadrant)
        if configured:
            return float(configured), "campaign [calproducts.gains]"
        if self._ptc is not None:
            value = self._ptc.record.get("ccds", {}).get(f"CCD{ccd}", {}).get(quadrant, {}).get("gain_e_per_adu")
            if isinstance(value, (int, float)) and value > 0:
                return float(value), f"{self._ptc.test} result ({self._ptc.path})"
        return NOMINAL_GAIN_E_PER_ADU, (f"nominal {NOMINAL_GAIN_E_PER_ADU} e-/ADU (no gain in the campaign's "
                                        "[calproducts] nor a PTC result under the results folder)")

    def gain_source(self) -> ProductSource:
        if self.campaign.calproducts.gains:
            path = str(self.campaign.source) if self.campaign.source else None
            return ProductSource("gain", "campaign", "campaign [calproducts.gains]" +
                                 " (quadrants it lacks: as below)" * (self._ptc is not None), path=path)
        if self._ptc is not None:
            return self._ptc.source("gain")
        return ProductSource("gain", "nominal", f"nominal {NOMINAL_GAIN_E_PER_ADU} e-/ADU: no gain in the "
                             f"campaign's [calproducts.gains] and no PTC result under {self.results_root}")

    # -- files ----------------------------------------------------------------------------------

    def path(self, kind: str, ccd: int, wavelength: int | None = None) -> Path | None:
        """The product file for a CCD (and wavelength, for flats), or None."""
        products = self.campaign.calproducts
        configured = {"master_bias": products.master_bias, "cosmetics_mask": products.masks,
                      "master_flat": products.flats.get(wavelength or 0, {})}.get(kind, {})
        if f"CCD{ccd}" in configured:
            return configured[f"CCD{ccd}"]
        if kind == "master_flat":
            return self._master_flat(ccd, wavelength)
        result = self._newest(kind)
        if result is None:
            return None
        prefix = _PRODUCT_PREFIX[kind]
        for name in result.record.get("products") or []:
            file_name = Path(name).name
            if file_name.startswith(prefix) and f"CCD{ccd}" in file_name:
                return result.path.parent / name
        return None

    def source(self, kind: str) -> ProductSource:
        if kind not in PRODUCTS:
            raise KeyError(f"unknown calibration product {kind!r}; known: {', '.join(PRODUCTS)}")
        if kind == "gain":
            return self.gain_source()
        products = self.campaign.calproducts
        configured = {"master_bias": products.master_bias, "cosmetics_mask": products.masks,
                      "master_flat": next(iter(products.flats.values()), {})}[kind]
        if configured:
            files = ", ".join(f"{ccd} {path}" for ccd, path in configured.items())
            return ProductSource(kind, "campaign", f"campaign [calproducts]: {files}",
                                 path=str(self.campaign.source) if self.campaign.source else None)
        result = self._newest(kind)
        if result is not None:
            return result.source(kind)
        return ProductSource(kind, "none", f"no {PRODUCTS[kind][1]} in the campaign's [calproducts] nor a "
                             f"result of {'/'.join(PRODUCTS[kind][0])} under {self.results_root}: not applied")

    def _master_flat(self, ccd: int, wavelength: int | None) -> Path | None:
        """The CCD's master flat, EUC_FF_<nm>nm_CCD<n>_... (column flats carry _col<NNN> and are not
        it), from the newest flat result that holds one at this wavelength (any, if None)."""
        nm = str(wavelength) if wavelength is not None else r"\d+"
        pattern = re.compile(rf"EUC_FF_{nm}nm_CCD{ccd}_")
        for result in sorted(self._flat_results, key=lambda r: str(r.record.get("finished", "")), reverse=True):
            for name in result.record.get("products") or []:
                if pattern.match(Path(name).name):
                    return result.path.parent / name
        return None

    @cached_property
    def _flat_results(self) -> list[_Result]:
        """Every finished, error-free result of the flat family (one per test and wavelength)."""
        found = []
        root = self.results_root
        for path in (root.glob("*/*/result.json") if root.is_dir() else []):
            if path.parent.name.startswith(".") or ".previous-" in path.parent.name:
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if (isinstance(record, dict) and not record.get("errors")
                    and record.get("family") in PRODUCTS["master_flat"][0]
                    and str(record.get("test", path.parent.name)) not in NOT_PRODUCING_TESTS["master_flat"]):
                found.append(_Result(str(record.get("test", path.parent.name)), path, record))
        return found

    # -- results of earlier runs ----------------------------------------------------------------

    @cached_property
    def _ptc(self) -> _Result | None:
        return self._newest("gain")

    def _newest(self, kind: str) -> _Result | None:
        found = [self._by_family[f] for f in PRODUCTS[kind][0] if f in self._by_family]
        return max(found, key=lambda r: str(r.record.get("finished", ""))) if found else None

    @cached_property
    def _by_family(self) -> dict[str, _Result]:
        """family -> its newest finished, error-free result under the results root."""
        newest: dict[str, _Result] = {}
        root = self.results_root
        if not root.is_dir():
            return newest
        for path in root.glob("*/*/result.json"):
            folder = path.parent.name
            if folder.startswith(".") or ".previous-" in folder:
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or record.get("errors"):
                continue
            family = record.get("family")
            if family not in _PRODUCING_FAMILIES:
                continue
            earlier = newest.get(family)
            if earlier is None or str(record.get("finished", "")) > str(earlier.record.get("finished", "")):
                newest[family] = _Result(str(record.get("test", folder)), path, record)
        return newest
