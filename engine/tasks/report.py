"""The test report: Markdown beside the results (rendered in the app; no LaTeX needed).

Values are shown with the family's declared units and precision (family.py, one formatter);
every sub-task is listed with its status, so a declared analysis without code reads "not
implemented", never as done.
"""

from __future__ import annotations

from .. import __version__
from ..formats.geometry import QUADRANTS
from .context import TaskContext
from .family import CCD_KEY, format_value

SUBTASK_WORDS = {"done": "done", "off": "switched off", "not implemented": "**not implemented**",
                 "skipped": "skipped", "failed": "**failed**"}


def write_report(ctx: TaskContext) -> None:
    ds = ctx.dataset
    lines = [f"# {ctx.test.name} — {ctx.test.purpose}", ""]
    span = f"{ds.obsid_range[0]}-{ds.obsid_range[1]}" if ds.obsid_range else "none"
    lines += [
        f"- session: {ctx.session}; block {ctx.campaign.info.block}; chamber {ctx.chamber.name}",
        f"- OBSIDs: {span} ({len(ds.exposures)} of {ds.expected_frames} exposures); day folder `{ds.day_folder}`",
        f"- vison {__version__}",
        "",
    ]
    lines += ["## Flags", ""]
    if ctx.flags.raised:
        lines += [f"- **{r.flag}** {str(r)[len(r.flag) + 2:]}" for r in ctx.flags.raised]
    else:
        lines.append("None raised.")
    lines.append("")
    lines += subtask_lines(ctx)
    if ds.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in ds.notes], ""]
    lines += value_lines(ctx)
    lines += ctx.report
    for figure in ctx.figures:
        lines += [f"![{figure}]({figure})", ""]
    with ctx.output("report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def subtask_lines(ctx: TaskContext) -> list[str]:
    outcome = ctx.outcome
    if outcome is None:
        return []
    lines = ["## Sub-tasks", ""]
    for name in ctx.family.subtasks:
        status = "running" if name == "report" else outcome.statuses.get(name, "not run")
        reason = outcome.reasons.get(name)
        lines.append(f"- {name}: {SUBTASK_WORDS.get(status, status)}{f' ({reason})' if reason else ''}")
    return lines + [""]


def value_lines(ctx: TaskContext) -> list[str]:
    """Per-quadrant values as one row per value (unit in the name), one column per CCD quadrant."""
    specs = ctx.family.value_specs()
    names = list(dict.fromkeys(name for ccd in ctx.values.values() for key, q in ccd.items() if key != CCD_KEY
                               for name in q))
    lines: list[str] = []
    if names:
        columns = [(ccd, q) for ccd in sorted(ctx.values) for q in QUADRANTS]
        lines += ["## Measured values", "",
                  "| value | " + " | ".join(f"{ccd} {q}" for ccd, q in columns) + " |",
                  "|---|" + "---:|" * len(columns)]
        for name in names:
            spec = specs.get(name)
            label = f"{name} ({spec.unit})" if spec and spec.unit else name
            cells = [format_value(ctx.values[ccd].get(q, {}).get(name), spec.precision if spec else None)
                     for ccd, q in columns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    ccd_names = list(dict.fromkeys(name for ccd in ctx.values.values() for name in ccd.get(CCD_KEY, {})))
    if ccd_names:
        ccds = sorted(ctx.values)
        lines += ["## Values per CCD", "", "| value | " + " | ".join(ccds) + " |", "|---|" + "---:|" * len(ccds)]
        for name in ccd_names:
            spec = specs.get(name)
            label = f"{name} ({spec.unit})" if spec and spec.unit else name
            cells = [format_value(ctx.values[ccd].get(CCD_KEY, {}).get(name), spec.precision if spec else None)
                     for ccd in ccds]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    shown = {k: v for k, v in ctx.test_values.items() if k != "calproducts"}
    if shown:
        lines += ["## Test values", ""]
        for name, value in shown.items():
            spec = specs.get(name)
            unit = f" {spec.unit}" if spec and spec.unit else ""
            lines.append(f"- {name}: {format_value(value, spec.precision if spec else None)}{unit}")
        lines.append("")
    calproducts = ctx.test_values.get("calproducts")
    if calproducts:
        lines += ["## Calibration products used", ""]
        lines += [f"- {kind}: {source.get('description', '')}" for kind, source in calproducts.items()]
        lines.append("")
    return lines
