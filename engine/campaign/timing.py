"""How long a frame, a column and a test take to acquire: the one timing model.

Used by the inventory (durations), the scheduler workbook and the simulator's clock.
See docs/timing.md for the model and its check against the cookbook's inventory.
"""

from __future__ import annotations

from typing import Any, Mapping

from .catalogue import TestDefinition
from .chamber import ChamberProfile

IMAGE_ROWS = 2066
SERIAL_PIXEL_US = 14.3
SERIAL_PIXELS = 2128  # 51 prescan + 2048 image + 29 overscan, as ELVIS clocks them
TRANSFER_OVERHEAD_S = 20.0


def frame_seconds(column: Mapping[str, Any]) -> float:
    """Seconds to acquire one frame of a script column (all ELVIS parameters present)."""
    rows_read = int(column["vend"]) - int(column["vstart"])
    seconds = float(column["exptime"])
    if int(column["siflsh"]):
        seconds += float(column["siflsh_p"]) / 1000.0
    seconds += IMAGE_ROWS * 4 * float(column["toi_fl"]) * 1e-6
    seconds += rows_read * (4 * float(column["toi_ro"]) + SERIAL_PIXEL_US * SERIAL_PIXELS) * 1e-6
    pumping_serial = int(column["s_tpump"])
    pumping_vertical = int(column["v_tpump"])
    if int(column["chinj"]) or pumping_serial or pumping_vertical:
        seconds += IMAGE_ROWS * (4 * float(column["toi_ch"]) + SERIAL_PIXEL_US * SERIAL_PIXELS * float(column["chin_dly"])) * 1e-6
    if pumping_serial:
        seconds += rows_read * (2 * SERIAL_PIXEL_US + float(column["dwell_s"])) * float(column["s_tp_cnt"]) * 1e-6
    if pumping_vertical:
        seconds += (4 * float(column["toi_tp"]) + float(column["dwell_v"])) * float(column["v_tp_cnt"]) * 1e-6
    return seconds + TRANSFER_OVERHEAD_S


def duration_seconds(test: TestDefinition, chamber: ChamberProfile) -> float:
    return sum(frame_seconds(col) * col["frames"] for col in test.script_columns(chamber))


def duration_minutes(test: TestDefinition, chamber: ChamberProfile) -> float:
    return duration_seconds(test, chamber) / 60.0
