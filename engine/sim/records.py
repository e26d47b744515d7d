"""What ELVIS records about an exposure: its EXP_LOG rows and its FITS header keywords."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..campaign.script_params import log_values
from ..formats.names import format_date_token, frame_stem, script_date
from .plan import PlannedExposure

NOMINAL_CCD_TEMPERATURE_C = -120.0


@dataclass(frozen=True)
class Equipment:
    """Serials and operator as the data record them (they may differ from the campaign's)."""

    operator: str = "sim"
    sn_ccd1: str = "CCD1-SIM"
    sn_ccd2: str = "CCD2-SIM"
    sn_ccd3: str = "CCD3-SIM"
    sn_roe: str = "ROE-SIM"
    sn_rpsu: str = "RPSU-SIM"
    elvis: str = "7.5.X"
    overrides: Mapping[str, str] = field(default_factory=dict)  # e.g. a wrong serial on request

    def differential(self) -> dict[str, str]:
        values = {k: getattr(self, k) for k in ("operator", "sn_ccd1", "sn_ccd2", "sn_ccd3", "sn_roe", "sn_rpsu")}
        values.update(self.overrides)
        return values


def explog_row(exposure: PlannedExposure, ccd: int, equipment: Equipment, exptime_factor: float = 1.0,
               ccd_temperature_c: float = NOMINAL_CCD_TEMPERATURE_C) -> dict[str, Any]:
    """One EXP_LOG row (7.5.X names) for one CCD of an exposure."""
    row = log_values({**exposure.params, **equipment.differential()})
    row["exptime"] = round(float(exposure.params["exptime"]) * exptime_factor, 4)
    row.update({
        "ObsID": exposure.obsid,
        "File_name": frame_stem(exposure.obsid, exposure.when, ccd),
        "CCD": f"CCD{ccd}",
        "ROE": "ROE1",
        "date": format_date_token(exposure.when),
        "calscrpt": f"vis_CalCamp_{exposure.test}_{script_date(exposure.when)}_v{equipment.elvis}.xlsx",
        "BUNIT": "ADU",
        "con_file": "vis_roe_config_273.txt",
        "fl_rdout": 0,
        "ci_rdout": 0,
        "cdpu_clk": 0,
        "fpga_ver": "2AC",
        "egse_ver": equipment.elvis,
    })
    for n in (1, 2, 3):
        for half in "TB":
            row[f"R1C{n}_T{half}"] = ccd_temperature_c
    return row


# EXP_LOG names whose FITS keyword differs from the upper-cased name.
_FITS_KEY = {"test": "OBJECT", "mirr_pos": "POS_MIRR", "egse_ver": "EGSE_VER", "motr": "MOTR"}
_NOT_IN_HEADER = {"File_name", "CCD", "ROE", "ObsID", "BUNIT"}


def fits_header(row: Mapping[str, Any], fullpath: str = "") -> dict[str, Any]:
    """The image extension's keywords ELVIS writes, from the frame's EXP_LOG row."""
    header: dict[str, Any] = {"BUNIT": "ADU", "OBSID": row["ObsID"], "LAB_VER": row.get("egse_ver", "")}
    for name, value in row.items():
        if name in _NOT_IN_HEADER:
            continue
        header[_FITS_KEY.get(name, name.upper())] = value
    header["FULLPATH"] = fullpath
    return header
