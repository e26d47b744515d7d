"""The test report: Markdown beside the results (rendered in the app; no LaTeX needed)."""

from __future__ import annotations

from .. import __version__
from ..formats.geometry import QUADRANTS
from .context import TaskContext


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
    if ds.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in ds.notes], ""]
    names = sorted({name for ccd in ctx.values.values() for q in ccd.values() for name in q})
    if names:
        lines += ["## Measured values", "", "| CCD | Q | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for ccd_name, quadrants in sorted(ctx.values.items()):
            for q in QUADRANTS:
                values = quadrants.get(q, {})
                lines.append(f"| {ccd_name} | {q} | " + " | ".join(_fmt(values.get(n)) for n in names) + " |")
        lines.append("")
    lines += ctx.report
    for figure in ctx.figures:
        lines += [f"![{figure}]({figure})", ""]
    with ctx.output("report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # 7 significant figures: any 16-bit offset to 0.01 ADU (65535.12), a RON to 0.001 ADU and
        # better; values are stored already rounded to their own precision, so nothing is padded.
        return f"{value:.7g}"
    return str(value)
