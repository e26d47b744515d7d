"""The one place a sub-task's outputs reach the results folder: values into result.json (rounded
to their declared precision by TaskContext.set_value; an undeclared name is a bug and says so),
CSV tables and staged files into products/, plots into figs/ (drawn in a background thread
while the next sub-task runs: TaskContext.draw_figure), sections into the report. Each file
is written under a temporary name and renamed, so a killed run never leaves half a product.
"""

from __future__ import annotations

import csv
import os

from .context import TaskContext
from .outputs import Outputs


def record(ctx: TaskContext, outputs: Outputs) -> None:
    for item in outputs.values:
        ctx.set_value(item.ccd, item.quadrant, item.name, item.value)
    for table in outputs.tables:
        with ctx.product(table.name) as tmp:
            with open(tmp, "w", newline="") as out:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(table.header)
                writer.writerows(table.rows)
    for staged in outputs.files:
        with ctx.product(staged.name) as tmp:
            os.replace(staged.path, tmp)
    for plot in outputs.plots:  # drawn in the background; the task waits for them before its report
        ctx.draw_figure(f"{ctx.test.name}_{plot.name}.png", plot.draw)
    for section in outputs.sections:
        ctx.add_section(section.title, section.body)
