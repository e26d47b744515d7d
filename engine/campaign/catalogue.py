"""The test catalogue: the one place where each calibration test's structure is written.

A test is a sequence of columns (configurations), each repeated `frames` times. The script
writer, the simulator and the pipeline's completeness check all read these definitions.

Names: an *instance* is what ELVIS logs in the `test` column (BIAS01, FOCUS00_800, PTC02_730);
a *generic handle* groups instances (FOCUS00, PTC02WAVE). Both resolve here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .chamber import ChamberProfile
from .script_params import full_column

WAVELENGTHS = (590, 730, 800, 880)


@dataclass(frozen=True)
class Column:
    """One configuration of a test: the script values it sets and how many frames it takes."""

    frames: int
    values: Mapping[str, Any]
    label: str = ""


class UnknownTestError(KeyError):
    """A test name that is neither an instance nor a generic handle of the catalogue."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class TestDefinition:
    __test__ = False  # not a pytest test class despite its name

    name: str  # instance name, as ELVIS logs it
    handle: str  # generic handle
    family: str  # analysis family: the module engine/tasks/<family>.py declares its sub-tasks, limits, values
    purpose: str
    build: Callable[[ChamberProfile], list[Column]] = field(repr=False)
    wavelength: int | None = None
    surrogate: str | None = None  # a test with no acquisition of its own analyses this one's data

    @property
    def acquires(self) -> bool:
        """Whether ELVIS runs a script for this test (surrogates reuse another's frames)."""
        return self.surrogate is None

    def columns(self, chamber: ChamberProfile) -> list[Column]:
        if self.surrogate is not None:
            return resolve_test(self.surrogate).columns(chamber)
        return self.build(chamber)

    def frames_per_column(self, chamber: ChamberProfile) -> list[int]:
        return [c.frames for c in self.columns(chamber)]

    def total_frames(self, chamber: ChamberProfile) -> int:
        return sum(self.frames_per_column(chamber))

    def script_columns(self, chamber: ChamberProfile, differential: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every ELVIS parameter of every column, as the script (and so the EXP_LOG) will hold it."""
        result = []
        for column in self.columns(chamber):
            values = {"test": self.name, "comments": column.label, **column.values, "frames": column.frames}
            result.append(full_column(values, differential))
        return result


# -- building blocks ---------------------------------------------------------------------------

DARK = {"exptime": 0.0, "shuttr": 0}  # shutter closed, no exposure
FULL_READ = {"vstart": 0, "vend": 2086}
VERTICAL_SHUFFLES = 5000  # v_tp_cnt of TP01/TP11
SERIAL_SHUFFLES = 5000  # s_tp_cnt of TP02/TP21
PARKED_WHEEL_POSITION = 4  # filter and mirror focus of PERSIST01's dark columns (as vison's script)


def _flat(chamber: ChamberProfile, nm: int, fraction: float) -> dict[str, Any]:
    return {"exptime": round(chamber.flat_time(nm, fraction), 4), "shuttr": 1, "source": "flat",
            "wave": chamber.wheel_position(nm)}


def _point(chamber: ChamberProfile, nm: int, fraction: float, mirror_offset: float = 0.0) -> dict[str, Any]:
    return {"exptime": round(chamber.point_time(nm, fraction), 4), "shuttr": 1, "source": "point",
            "wave": chamber.wheel_position(nm), "mirr_on": 1,
            "mirr_pos": round(chamber.focus(nm) + mirror_offset, 3)}


def _injection(toi_ch: int, delay_factor: float, **voltages: float) -> dict[str, Any]:
    values: dict[str, Any] = {"chinj": 1, "toi_ch": toi_ch, "id_dly": delay_factor * toi_ch, "id_wid": 60}
    for name, volts in voltages.items():
        if name == "IG1":
            values.update({f"IG1_{n}_{h}": volts for n in (1, 2, 3) for h in "TB"})
        elif name == "IG2":
            values.update({"IG2_T": volts, "IG2_B": volts})
        else:
            values[name] = volts
    return values


# Injection-drain delays, in units of toi_ch: 2.5 reaches E, F ("B" half), 1.5 reaches G, H.
INJECTION_DELAYS = (2.5, 1.5)


def _steps(start: float, stop: float, step: float) -> list[float]:
    count = int(round((stop - start) / step)) + 1
    return [round(start + i * step, 4) for i in range(count)]


# -- the tests ---------------------------------------------------------------------------------

def _mot_warm(ch: ChamberProfile) -> list[Column]:
    base = {"toi_ro": 500, **FULL_READ}
    cols = [
        Column(1, {**base, **DARK, "rdmode": "rwd_bas_vs"}, "BIAS_RVS"),
        Column(1, {**base, **DARK, "rdmode": "rwd_bas_v"}, "BIAS_RV"),
        Column(1, {**base, **DARK, "rdmode": "fwd_bas"}, "RAMP"),
        Column(1, {**base, **DARK, **_injection(250, 2.5, IDL=10.5, IDH=18.0, IG1=4.5, IG2=7.0),
                   "chinj_on": 30, "chinj_of": 50}, "CHINJ"),
        Column(1, {**base, **_flat(ch, 800, 0.5)}, "FLAT"),
    ]
    cols += [Column(1, {**base, **_point(ch, nm, 0.5)}, f"POINT_{nm}") for nm in (590, 730, 880)]
    return cols


def _cosmetics(ch: ChamberProfile) -> list[Column]:
    return [Column(5, {**DARK, **FULL_READ}, "BIAS"), Column(5, {**_flat(ch, 800, 0.5), **FULL_READ}, "FLAT")]


def _bias(rdmode: str) -> Callable[[ChamberProfile], list[Column]]:
    return lambda ch: [Column(10, {**DARK, **FULL_READ, "rdmode": rdmode, "toi_ro": 1000}, "BIAS")]


def _dark(ch: ChamberProfile) -> list[Column]:
    return [Column(4, {"exptime": 565.0, "shuttr": 0, **FULL_READ}, "DARK")]


def _chinj(swept: str, values: list[float], fixed: dict[str, float]) -> Callable[[ChamberProfile], list[Column]]:
    def build(ch: ChamberProfile) -> list[Column]:
        cols = []
        for delay in INJECTION_DELAYS:
            for value in values:
                volts = {**fixed, swept: value}
                inj = _injection(500, delay, **volts)
                cols.append(Column(1, {**DARK, **FULL_READ, **inj, "chinj_on": 30, "chinj_of": 100},
                                   f"{swept}_{value:.2f}_D{delay}"))
        return cols
    return build


def _vertical_pumping(idl: float) -> Callable[[ChamberProfile], list[Column]]:
    dwell_tois = (50, 200, 1000, 2000, 4000, 8000)
    modes = (123, 234, 341, 412)

    def build(ch: ChamberProfile) -> list[Column]:
        cols = []
        for delay in INJECTION_DELAYS:
            # The shuffle count is common to the test: the unpumped BGD column sets (and logs) it too.
            inj = {**DARK, **FULL_READ, **_injection(250, delay, IDL=idl, IDH=18.0, IG1=4.0, IG2=6.0),
                   "chinj_on": 2066, "chinj_of": 0, "v_tp_cnt": VERTICAL_SHUFFLES}
            cols.append(Column(1, {**inj, "v_tpump": 0}, f"BGD_D{delay}"))
            for toi in dwell_tois:
                for mode in modes:
                    cols.append(Column(1, {**inj, "v_tpump": 1, "toi_tp": toi, "v_tpmod": mode},
                                       f"V{mode}_T{toi}_D{delay}"))
        return cols
    return build


def _serial_pumping(idl: float) -> Callable[[ChamberProfile], list[Column]]:
    dwells = (0.0, 4.75, 14.3, 28.6)
    modes = (23, 31)

    def build(ch: ChamberProfile) -> list[Column]:
        cols = []
        for delay in INJECTION_DELAYS:
            # The shuffle count is common to the test: the unpumped BGD column sets (and logs) it too.
            inj = {**DARK, "vstart": 0, "vend": 100,
                   **_injection(250, delay, IDL=idl, IDH=18.0, IG1=4.0, IG2=6.0),
                   "chinj_on": 2066, "chinj_of": 0, "s_tp_cnt": SERIAL_SHUFFLES}
            cols.append(Column(1, {**inj, "s_tpump": 0}, f"BGD_D{delay}"))
            for dwell in dwells:
                for mode in modes:
                    cols.append(Column(1, {**inj, "s_tpump": 1, "dwell_s": dwell, "s_tpmod": mode},
                                       f"S{mode}_W{dwell}_D{delay}"))
        return cols
    return build


def _flat_series(nm: int, fractions: list[float], frames: list[int], extra: dict[str, Any] | None = None,
                 label: str = "FLAT") -> Callable[[ChamberProfile], list[Column]]:
    def build(ch: ChamberProfile) -> list[Column]:
        return [Column(n, {**_flat(ch, nm, f), **FULL_READ, **(extra or {})}, f"{label}_{f * 100:g}")
                for f, n in zip(fractions, frames)]
    return build


def _point_series(nm: int, fractions: list[float], frames: list[int]) -> Callable[[ChamberProfile], list[Column]]:
    # Every point-source series (PSF01, PSF02, PSFLUX00) dithers the same way.
    dither = {"motr_on": 1, "motr_cnt": 2, "motr_siz": 120}

    def build(ch: ChamberProfile) -> list[Column]:
        return [Column(n, {**_point(ch, nm, f), **FULL_READ, **dither}, f"PSF_{f * 100:g}")
                for f, n in zip(fractions, frames)]
    return build


def _nonlinearity(low: list[float], high: list[float], low_nm: int, high_nm: int,
                  extra: dict[str, Any] | None = None) -> Callable[[ChamberProfile], list[Column]]:
    """Background, then each fluence (4 frames) followed by a stability frame at 50 %.

    The background sits behind the stability frames' filter (NL01's only one), as vison's scripts
    set it; its shutter stays closed (vison leaves it open for 0 s: no light either way).
    """
    def build(ch: ChamberProfile) -> list[Column]:
        extra_values = {**FULL_READ, **(extra or {})}
        stab = Column(1, {**_flat(ch, high_nm, 0.5), **extra_values}, "STAB")
        cols = [Column(3, {**DARK, "wave": ch.wheel_position(high_nm), **extra_values}, "BGD"), stab]
        for nm, fractions in ((low_nm, low), (high_nm, high)):
            for f in fractions:
                cols.append(Column(4, {**_flat(ch, nm, f), **extra_values}, f"NL_{nm}_{f * 100:g}"))
                cols.append(stab)
        return cols
    return build


def _focus(nm: int) -> Callable[[ChamberProfile], list[Column]]:
    def build(ch: ChamberProfile) -> list[Column]:
        return [Column(1, {**_point(ch, nm, 0.6, mirror_offset=0.2 * j), **FULL_READ}, f"F{j}") for j in range(-4, 5)]
    return build


def _persistence(ch: ChamberProfile) -> list[Column]:
    # The mirror stays on all test long; while dark it is parked at filter 4's nominal focus.
    parked = {"flushes": 3, "wave": PARKED_WHEEL_POSITION, "source": "flat", "mirr_on": 1,
              "mirr_pos": ch.focus(ch.wavelength(PARKED_WHEEL_POSITION)), **FULL_READ}
    dark = {**parked, "exptime": 565.0, "shuttr": 0}
    return [
        Column(5, {**parked, **DARK}, "RESET"),
        Column(3, dark, "REFER"),
        # Saturating, defocused point source through filter-wheel position 2.
        Column(1, {**_point(ch, ch.wavelength(2), 1.0, mirror_offset=-10.0), "exptime": 600.0,
                   "flushes": 3, **FULL_READ}, "EXPOSE"),
        Column(3, dark, "LATENT"),
    ]


PTC01_FRACTIONS = [0.05, 0.10, 0.20, 0.30, 0.50, 0.70, 0.80, 0.90, 1.00, 1.10, 1.20]
PTC01_FRAMES = [10] * 8 + [4] * 3
PTC02_FRACTIONS = [0.10, 0.30, 0.50, 0.70, 0.80, 0.90]
NL01_FRACTIONS = [0.005, 0.007, 0.01, 0.02, 0.03, 0.05, 0.10, 0.20, 0.30, 0.55, 0.70, 0.80, 0.85, 0.90, 0.95, 1.00, 1.10]
NL02_FRACTIONS = [0.005, 0.007, 0.01, 0.02, 0.03, 0.05, 0.10, 0.15, 0.20, 0.25, 0.50, 0.70, 0.80, 0.85, 0.90, 0.95, 1.00, 1.10]
PSF_FRACTIONS = [0.05, 0.25, 0.50, 0.75, 0.90]
RD_VARIANTS = {"155R": 15.5, "160R": 16.0, "165R": 16.5}
TEMPERATURE_VARIANTS = ("148K", "158K")


def _definitions() -> list[TestDefinition]:
    d: list[TestDefinition] = []
    add = d.append
    add(TestDefinition("MOT_WARM", "MOT_WARM", "motwarm", "warm functional check before pump-down", _mot_warm))
    add(TestDefinition("COSMETICS00", "COSMETICS00", "cosmetics", "hot, dead/cold pixels and bad columns: cosmetics masks", _cosmetics))
    add(TestDefinition("BIAS01", "BIAS01", "bias", "offsets and RON per quadrant; master bias", _bias("fwd_bas")))
    add(TestDefinition("BIAS02", "BIAS02", "bias", "offsets and RON in reverse vertical readout", _bias("rwd_bas_v")))
    add(TestDefinition("DARK01", "DARK01", "dark", "dark current and hot pixels", _dark))
    add(TestDefinition("CHINJ01", "CHINJ01", "chinj", "injection level vs IG1",
                       _chinj("IG1", _steps(2.5, 6.75, 0.25), {"IDL": 11.0, "IDH": 18.0, "IG2": 6.0})))
    add(TestDefinition("CHINJ02", "CHINJ02", "chinj", "injection level vs IDL",
                       _chinj("IDL", _steps(9.5, 12.5, 0.25), {"IDH": 18.0, "IG1": 4.0, "IG2": 6.0})))
    add(TestDefinition("TP01", "TP01", "tp", "vertical trap pumping", _vertical_pumping(11.0)))
    add(TestDefinition("TP11", "TP11", "tp", "vertical trap pumping (IDL 10.5 V)", _vertical_pumping(10.5)))
    add(TestDefinition("TP02", "TP02", "tp", "serial trap pumping", _serial_pumping(11.0)))
    add(TestDefinition("TP21", "TP21", "tp", "serial trap pumping (IDL 10.5 V)", _serial_pumping(10.5)))
    for nm in (*WAVELENGTHS, 0):
        # Timed with the flat source's full-well times; vison's campaign used the point source's
        # (a quirk: a flat at 10-80 % of tFWC_point misses the fluences its own check expects).
        add(TestDefinition(f"FLATFLUX00_{nm}", "FLATFLUX00", "flatflux", "flat fluxes vs exposure time",
                           _flat_series(nm, [0.10, 0.30, 0.60, 0.80], [1, 1, 1, 1]), wavelength=nm))
    add(TestDefinition("FLAT01", "FLAT01", "flat", "master flats, PRNU, illumination at 800 nm",
                       _flat_series(800, [0.25, 0.50, 0.75], [80, 60, 30]), wavelength=800))
    for nm in (590, 730, 880):
        add(TestDefinition(f"FLAT02_{nm}", "FLAT02", "flat", f"flats at {nm} nm",
                           _flat_series(nm, [0.25, 0.75], [80, 30]), wavelength=nm))
    add(TestDefinition("FLAT_STB", "FLAT_STB", "flat", "flat-field stability: 15 flats at 30 % of full well, 800 nm",
                       _flat_series(800, [0.30], [15]), wavelength=800))
    add(TestDefinition("PTC01", "PTC01", "ptc", "photon transfer curve: gain, full well",
                       _flat_series(800, PTC01_FRACTIONS, PTC01_FRAMES, label="PTC"), wavelength=800))
    for nm in (590, 730, 880):
        add(TestDefinition(f"PTC02_{nm}", "PTC02WAVE", "ptc", f"photon transfer curve at {nm} nm",
                           _flat_series(nm, PTC02_FRACTIONS, [4] * 6, label="PTC"), wavelength=nm))
    for temp in TEMPERATURE_VARIANTS:
        add(TestDefinition(f"PTC02_{temp}", "PTC02TEMP", "ptc", f"photon transfer curve at {temp}",
                           _flat_series(800, PTC02_FRACTIONS, [4] * 6, label="PTC"), wavelength=800))
    for tag, rd in RD_VARIANTS.items():
        add(TestDefinition(f"PTC02_{tag}", "PTC02RD", "ptc", f"photon transfer curve at RD {rd} V",
                           _flat_series(800, PTC02_FRACTIONS, [4] * 6, {"RD_T": rd, "RD_B": rd}, label="PTC"),
                           wavelength=800))
    add(TestDefinition("NL01", "NL01", "nl", "non-linearity curve, one source",
                       _nonlinearity(NL01_FRACTIONS, [], 0, 0), wavelength=0))
    add(TestDefinition("NL02", "NL02", "nl", "non-linearity with two sources",
                       _nonlinearity(NL02_FRACTIONS[:10], NL02_FRACTIONS[7:], 0, 880)))
    below = [f for f in NL01_FRACTIONS if f < 0.20]
    above = [f for f in NL01_FRACTIONS if f >= 0.20]
    for tag, rd in RD_VARIANTS.items():
        add(TestDefinition(f"NL02_{tag}", "NL02RD", "nl", f"non-linearity with two sources at RD {rd} V",
                           _nonlinearity(below, above, 0, 880, {"RD_T": rd, "RD_B": rd})))
    add(TestDefinition("BF01", "BF01", "bf", "brighter-fatter from PTC01 pairs", _no_acquisition, 800, surrogate="PTC01"))
    for nm in (590, 730, 880):
        add(TestDefinition(f"BF01_{nm}", "BF01WAVE", "bf", f"brighter-fatter from PTC02_{nm}",
                           _no_acquisition, nm, surrogate=f"PTC02_{nm}"))
    for nm in (*WAVELENGTHS, 0):
        add(TestDefinition(f"PSFLUX00_{nm}", "PSFLUX00", "psflux", "point-source fluxes vs exposure time",
                           _point_series(nm, [0.10, 0.30, 0.60, 0.80], [1, 1, 1, 1]), wavelength=nm))
    for nm in WAVELENGTHS:
        add(TestDefinition(f"PSF01_{nm}", "PSF01", "psf", f"PSF shapes and fluxes at {nm} nm",
                           _point_series(nm, PSF_FRACTIONS, [20, 15, 10, 4, 4]), wavelength=nm))
    for temp in TEMPERATURE_VARIANTS:
        add(TestDefinition(f"PSF02_{temp}", "PSF02", "psf", f"PSF shapes and fluxes at {temp}",
                           _point_series(800, PSF_FRACTIONS, [20, 14, 10, 4, 4]), wavelength=800))
    for nm in WAVELENGTHS:
        add(TestDefinition(f"FOCUS00_{nm}", "FOCUS00", "focus", f"focus curve at {nm} nm", _focus(nm), wavelength=nm))
    add(TestDefinition("PERSIST01", "PERSIST01", "persist", "persistence after saturation", _persistence))
    return d


def _no_acquisition(ch: ChamberProfile) -> list[Column]:
    raise AssertionError("surrogate tests take their columns from the surrogate")  # never called


CATALOGUE: dict[str, TestDefinition] = {t.name: t for t in _definitions()}
HANDLES: dict[str, list[str]] = {}
for _t in CATALOGUE.values():
    HANDLES.setdefault(_t.handle, []).append(_t.name)


def instance_names() -> list[str]:
    """Every instance name, in catalogue order."""
    return list(CATALOGUE)


def acquired_tests(family: str) -> tuple[str, ...]:
    """The instances of `family` that acquire frames of their own (not surrogates), in catalogue order."""
    return tuple(name for name, definition in CATALOGUE.items() if definition.family == family and definition.acquires)


def handle_names() -> list[str]:
    return list(HANDLES)


def resolve(name: str) -> list[TestDefinition]:
    """The instances a name stands for: an instance name gives itself, a handle all its instances."""
    key = name.strip().upper()
    if key in CATALOGUE:
        return [CATALOGUE[key]]
    if key in HANDLES:
        return [CATALOGUE[n] for n in HANDLES[key]]
    known = list(dict.fromkeys([*CATALOGUE, *HANDLES]))  # handles such as BIAS01 are also instances
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UnknownTestError(
        f"unknown test {name!r}: expected a catalogue test such as BIAS01 or FOCUS00_800 "
        f"(`vison-engine catalogue` lists them){hint}"
    )


def resolve_test(name: str) -> TestDefinition:
    """One test instance by name; a handle with a single instance (BIAS01) resolves too."""
    found = resolve(name)
    if len(found) > 1:
        raise UnknownTestError(
            f"{name!r} is a generic handle of {len(found)} tests ({', '.join(t.name for t in found)}): name one of them"
        )
    return found[0]
