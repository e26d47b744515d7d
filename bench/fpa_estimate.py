"""Paper estimate of an FPA campaign: exposures, bytes, core-hours and wall time on N workers.

No timing: a calculator from the project's own facts, done in about a second.
- Which tests: the block campaign's sessions (configs/sessions_template.toml, the campaign
  vison's block test sequence gives), one row per (session, test), taken as the FPA campaign's.
- Exposures: the catalogue's `total_frames` with the default chamber profile (one LE1 file an
  exposure, where a block writes one FITS a CCD).
- Bytes: an LE1 exposure is 145 HDUs (empty primary, 144 quadrants of LE1_FULL, uint16), each
  header one 2880-byte FITS block as engine/sim/le1.py writes them (real headers are a few
  blocks more: under 0.1 % of a frame).
- CPU: seconds a frame-quadrant per family, from the measurements in docs/fpa.md and
  docs/performance.md (CPU_PER_FRAME_QUADRANT, each with where it comes from), times 144
  quadrants times the exposures, plus the run's own serial read of each frame's headers.
- Wall on N workers, per test: the larger of CPU / N (at most 144 units run at once: one a
  quadrant) and reading every byte once from a shared filesystem at the stated bandwidth; plus
  the serial index. Tests run one after the other, so the campaign's wall is the sum of its tests'.

Run: .venv/bin/python bench/fpa_estimate.py [--workers 2 16 64 144] [--bandwidth 1.1 3] [--chamber default]
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from engine.campaign.catalogue import CATALOGUE
from engine.campaign.chamber import load_chamber
from engine.formats.fpa import LE1_EXTENSIONS
from engine.formats.geometry import CCDGeometry
from engine.formats.le1 import LE1_FULL
from engine.tasks.fpa_family import fpa_families

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN_SESSIONS = REPO / "configs" / "sessions_template.toml"

FITS_BLOCK = 2880
HEADER_BLOCKS = 1  # engine/sim/le1.py's headers (about 20 cards) fit one block
INDEX_S_PER_EXPOSURE = 0.24  # docs/fpa.md "Measured": the run's own read of a 1.28 GB frame's headers
WORKERS = (2, 16, 64, 144)
BANDWIDTHS_GB_S = (1.1, 3.0)  # 10 GbE; a faster shared filesystem


@dataclass(frozen=True)
class Cost:
    seconds: float  # CPU seconds a frame-quadrant (one quadrant of one exposure)
    source: str  # where the number comes from


def _per(cpu_s: float, frame_quadrants: int) -> float:
    return cpu_s / frame_quadrants


# The upper end of each measured range (CPU seconds, `time.process_time` or the bench's CPU
# column). A block frame-quadrant (2086 x 2119) stands for an LE1 one (2086 x 2128): 0.4 % apart.
CPU_PER_FRAME_QUADRANT: dict[str, Cost] = {
    # Measured over the FPA: one full-size LE1 quadrant unit, products on (docs/fpa.md "Measured").
    "bias": Cost(_per(0.81, 10), "FPA: BIAS01 unit, 10 frames, master + std + mask, 0.69-0.81 s (docs/fpa.md)"),
    "dark": Cost(_per(0.86, 4), "FPA: DARK01 unit, 4 frames, master + error + mask, 0.70-0.86 s (docs/fpa.md)"),
    "ptc": Cost(_per(0.19, 10), "FPA: PTC01 unit, 10 frames (5 pairs), 0.17-0.19 s (docs/fpa.md)"),
    "flat": Cost(_per(2.2, 20), "FPA: FLAT01 unit, 20 frames, 4 planes + mask, 1.9-2.2 s (docs/fpa.md)"),
    # Block benches, whole analysis CPU over (FITS x 4 quadrants): docs/performance.md, "Where
    # every benchmarked test stands (third session, quiet machine)"; includes each run's fixed
    # costs (imports, HK, figures: a few seconds), so it overstates a little.
    "tp": Cost(_per(14.3, 150 * 4), "block: TP01 bench 14.2-14.3 s / 600 (perf. third session; "
                                   "the fourth session's consumer saves ~0.2 s more a unit)"),
    "focus": Cost(_per(5.5, 27 * 4), "block: FOCUS00_800 bench 5.1-5.5 s / 108 (perf. third session)"),
    "chinj": Cost(_per(14.0, 108 * 4), "block: CHINJ01 bench 13.2-14.0 s / 432 (perf. third session)"),
    # Per-quadrant measurements of the later subsections (no bench of the whole test).
    "cosmetics": Cost(_per(0.93, 10), "block: COSMETICS00 quadrant, 10 frames, 0.93 s (perf. COSMETICS00 ...)"),
    "persist": Cost(_per(1.09, 10), "block: PERSIST01 quadrant, 10 frames, 1.09 s (perf. COSMETICS00 ...)"),
    "motwarm": Cost(_per(0.61, 10), "block: MOT_WARM quadrant, 10 frames, 0.61 s (perf. COSMETICS00 ...)"),
    "nl": Cost(0.0125 + 0.007, "block: check's read 10.1-12.5 ms + NL tiles 4-7 ms a frame-quadrant "
                               "(perf. CHINJ01 and NL01)"),
}

# Families with no measurement of their own, and the measured family standing in for them.
STAND_INS = {
    "psf": "focus",  # the same spot detection and stamps; PSF01's cross-talk read not counted
    "psflux": "focus",
    "flatflux": "flat",  # a few flats; the FPA flat unit is the dearer bound
}


@dataclass(frozen=True)
class Row:
    session: str
    test: str
    family: str
    fpa_today: bool  # analysed by `vison-engine fpa run` now (else per block only)
    exposures: int
    bytes: int
    cpu_s: float  # units' CPU, all 144 quadrants
    index_s: float  # the run's serial header reads

    @property
    def terabytes(self) -> float:
        return self.bytes / 1e12

    @property
    def core_hours(self) -> float:
        return (self.cpu_s + self.index_s) / 3600.0

    def cpu_bound_s(self, workers: int) -> float:
        return self.cpu_s / min(workers, LE1_EXTENSIONS) + self.index_s

    def io_bound_s(self, bandwidth_gb_s: float) -> float:
        return self.bytes / (bandwidth_gb_s * 1e9) + self.index_s

    def wall_s(self, workers: int, bandwidth_gb_s: float) -> float:
        return max(self.cpu_bound_s(workers), self.io_bound_s(bandwidth_gb_s))


def le1_exposure_bytes(geometry: CCDGeometry = LE1_FULL, header_blocks: int = HEADER_BLOCKS) -> int:
    """Bytes of one LE1 file: the primary header, then 144 (header + uint16 quadrant padded to 2880)."""
    data = geometry.quad_width * geometry.quad_height * 2
    padded = math.ceil(data / FITS_BLOCK) * FITS_BLOCK
    return header_blocks * FITS_BLOCK + LE1_EXTENSIONS * (header_blocks * FITS_BLOCK + padded)


def campaign_tests(sessions_file: Path = CAMPAIGN_SESSIONS) -> list[tuple[str, str]]:
    """(session, test) in the campaign's order: a test in several sessions counts in each."""
    with open(sessions_file, "rb") as handle:
        sessions = tomllib.load(handle)["sessions"]
    return [(session, test) for session, tests in sessions.items() for test in tests]


def cost_of(family: str) -> Cost:
    try:
        return CPU_PER_FRAME_QUADRANT[STAND_INS.get(family, family)]
    except KeyError:
        raise KeyError(f"family {family!r}: no CPU cost in bench/fpa_estimate.py CPU_PER_FRAME_QUADRANT "
                       f"and no STAND_INS entry") from None


def estimate(chamber_name: str | None = None, sessions_file: Path = CAMPAIGN_SESSIONS) -> list[Row]:
    chamber = load_chamber(chamber_name)
    in_fpa = fpa_families()
    per_exposure = le1_exposure_bytes()
    rows = []
    for session, test in campaign_tests(sessions_file):
        definition = CATALOGUE[test]
        exposures = definition.total_frames(chamber)
        cpu = cost_of(definition.family).seconds * LE1_EXTENSIONS * exposures
        rows.append(Row(session, test, definition.family, test in in_fpa, exposures, exposures * per_exposure,
                        cpu, exposures * INDEX_S_PER_EXPOSURE))
    return rows


def total(rows: list[Row]) -> Row:
    return Row("all", "total", "", all(r.fpa_today for r in rows), sum(r.exposures for r in rows),
               sum(r.bytes for r in rows), sum(r.cpu_s for r in rows), sum(r.index_s for r in rows))


def campaign_wall_s(rows: list[Row], workers: int, bandwidth_gb_s: float) -> float:
    """Tests one after the other: each bounded by its CPU on N workers or by its reads."""
    return sum(r.wall_s(workers, bandwidth_gb_s) for r in rows)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def tests_table(rows: list[Row], workers: tuple[int, ...], bandwidth: float) -> str:
    head = ["session", "test", "family", "FPA mode today", "exposures", "TB", "CPU s / frame-quadrant",
            "core-hours"] + [f"wall min, N={n}" for n in workers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows + [total(rows)]:
        is_total = r.test == "total"
        cells = [r.session, f"**{r.test}**" if is_total else r.test, r.family,
                 "" if is_total else ("yes" if r.fpa_today else "per block"), str(r.exposures),
                 f"{r.terabytes:.3f}", "" if is_total else f"{cost_of(r.family).seconds:.4f}",
                 f"{r.core_hours:.2f}"]
        walls = [campaign_wall_s(rows, n, bandwidth) if is_total else r.wall_s(n, bandwidth) for n in workers]
        lines.append("| " + " | ".join(cells + [f"{w / 60:.1f}" for w in walls]) + " |")
    return "\n".join(lines)


def bounds_table(rows: list[Row], workers: tuple[int, ...], bandwidths: tuple[float, ...]) -> str:
    everything = total(rows)
    lines = [("| N workers | bandwidth GB/s | CPU-bound h (core-h / N) | I/O-bound h (bytes / bandwidth) | "
              "wall h (sum over tests of the larger) | dominated by |"), "|---|---|---|---|---|---|"]
    for n in workers:
        for bandwidth in bandwidths:
            cpu = sum(r.cpu_bound_s(n) for r in rows)
            io = sum(r.io_bound_s(bandwidth) for r in rows)
            cpu_tests = sum(r.cpu_bound_s(n) >= r.io_bound_s(bandwidth) for r in rows)
            lead = "CPU" if cpu >= io else "I/O"
            lines.append(f"| {n} | {bandwidth:g} | {_hours(cpu)} | {_hours(io)} | "
                         f"{_hours(campaign_wall_s(rows, n, bandwidth))} | {lead} "
                         f"({cpu_tests} of {len(rows)} tests CPU-bound) |")
    return "\n".join(lines) + (f"\n\n{everything.exposures} exposures, {everything.terabytes:.2f} TB, "
                               f"{everything.core_hours:.1f} core-hours.")


def costs_table() -> str:
    lines = ["| family | CPU s / frame-quadrant | from |", "|---|---|---|"]
    for family, cost in CPU_PER_FRAME_QUADRANT.items():
        lines.append(f"| {family} | {cost.seconds:.4f} | {cost.source} |")
    for family, stand_in in STAND_INS.items():
        lines.append(f"| {family} | {cost_of(family).seconds:.4f} | as {stand_in} (not measured) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS))
    parser.add_argument("--bandwidth", type=float, nargs="+", default=list(BANDWIDTHS_GB_S),
                        help="shared filesystem's read bandwidth, GB/s (the per-test table uses the first)")
    parser.add_argument("--chamber", default=None, help="chamber profile (default: configs/chambers/default.toml)")
    args = parser.parse_args(argv)
    rows = estimate(args.chamber)
    workers, bandwidths = tuple(args.workers), tuple(args.bandwidth)
    print(f"LE1 exposure: {le1_exposure_bytes():,} bytes; tests of {CAMPAIGN_SESSIONS.relative_to(REPO)}; "
          f"chamber {load_chamber(args.chamber).name}\n")
    print(f"Per test (wall at {bandwidths[0]:g} GB/s):\n")
    print(tests_table(rows, workers, bandwidths[0]))
    print("\nCampaign, CPU against I/O:\n")
    print(bounds_table(rows, workers, bandwidths))
    print("\nCPU costs used:\n")
    print(costs_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
