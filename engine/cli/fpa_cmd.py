"""`vison-engine fpa`: the focal plane's LE1 frames, analysed per quadrant, results per CCD C_ji.

    vison-engine fpa run --data DAYFOLDER --test BIAS01|BIAS02|DARK01|PTC01|FLAT01 --results DIR [--session FPA]
                         [--obsids FIRST-LAST] [--design final|initial] [--map VALUE]... [--no-meta]
                         [-m JOBS | --executor dask://HOST:PORT] [--json]
    vison-engine fpa masks RESULT_DIR_OR_MASK... --out FILE [--force] [--json]
    vison-engine fpa simulate --out DIR [--frames N] [--full] [--seed 1] [--test BIAS01|DARK01|PTC01|FLAT01]
                              [--exptime S] [--hot-pixels N] [--fluences K] [--dead-pixels N]

`run` writes <DIR>/<session>/<TEST>/ (result.json, report.md, figs/<TEST>_fpa_<value>.png, and
the family's products in the LE1 layout unless --no-meta: BIAS01/02 products/EUC_MASTERBIAS_FPA.fits
+ _STD.fits, DARK01 EUC_MASTERDARK_FPA.fits + _ERR.fits, both EUC_MASK_FPA.fits; PTC01 the gain
table PTC01_GAIN_TB.csv; FLAT01 EUC_FF_800nm_col<NNN>_FPA.fits + _ERR.fits per column and
EUC_MASK_FPA.fits of its flat defects); a test the FPA
mode does not analyse is refused in one line naming those it does (tasks/fpa_family.py);
`masks` merges the EUC_MASK_FPA.fits of several runs (result folders or the files) into one LE1-layout
mask, the bitwise or of their DEFECTS bits (tasks/fpa_masks.py); `simulate` writes LE1 frames,
their FPA EXP_LOG and LE1_TRUTHS.json (docs/fpa.md).
Exit status 0 done, 1 done with errors (a sub-task failed: the FPA products not written, said
in result.json), 2 bad input (no FPA log, no frame, a test not available in FPA mode,
unreachable scheduler; masks: a missing or unreadable mask, masks of different layouts, --out
existing without --force).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

NAME = "fpa"
HELP = ("FPA mode: analyse LE1 frames of the whole focal plane (BIAS01/02, DARK01, PTC01, FLAT01), FPA maps, "
        "FPA masters, cosmetics mask and gain table; merge the masks of several runs; simulate LE1 frames")
EXIT_OK, EXIT_ERRORS, EXIT_INPUT = 0, 1, 2


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="fpa_action", metavar="ACTION")
    run = actions.add_parser("run", help="analyse a test's LE1 frames over the FPA",
                             description="analyse a test's LE1 frames over the FPA: the block family's values "
                                         "of the 144 quadrants (BIAS01/02: offsets and read noise; DARK01: dark "
                                         "current and hot pixels; PTC01: gain and blooming; FLAT01: PRNU per "
                                         "fluence column), results per CCD C_11..C_66, FPA maps, and the FPA "
                                         "masters and cosmetics mask in the LE1 layout or the gain table (the meta "
                                         "sub-task). "
                                         "Other tests run per block (vison-engine run).")
    run.add_argument("--data", required=True, metavar="DAYFOLDER", help="folder of the LE1 frames and the FPA EXP_LOG")
    run.add_argument("--test", required=True,
                     help="BIAS01, BIAS02, DARK01, PTC01 or FLAT01 (the tests the FPA mode analyses; also the "
                          "PTC02 and FLAT02 instances, FLAT_STB)")
    run.add_argument("--results", required=True, metavar="DIR", help="results root: writes DIR/SESSION/TEST/")
    run.add_argument("--session", default="FPA", help="session folder name under DIR (default FPA)")
    run.add_argument("--obsids", metavar="FIRST-LAST", help="only these OBSIDs, e.g. 1000-1009")
    run.add_argument("--design", default="final", choices=("final", "initial"),
                     help="FPA layout: final (OWEN, EINSTEIN; default) or initial (SKLODOWSKA, MAX)")
    run.add_argument("--map", action="append", default=[], metavar="VALUE",
                     help="per-quadrant value to draw as an FPA map (repeatable; default: BIAS0x "
                          "offset_prescan_adu and ron_image_adu, DARK01 dark_e_per_pix_per_hour and hot_pixels, "
                          "PTC01 gain_e_per_adu, FLAT01 prnu_pct: a per-column value maps its first column)")
    run.add_argument("--no-meta", dest="meta", action="store_false",
                     help="switch off the meta sub-task: no FPA products (master, spread, mask; gain table; "
                          "master flats)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("-m", "--jobs", type=int, metavar="N", help="local worker processes (default: the cores)")
    where.add_argument("--executor", metavar="WHERE", help='"local" or "dask://HOST:PORT" (docs/scaling.md)')
    run.add_argument("--json", action="store_true", help="the outcome as JSON")

    masks = actions.add_parser("masks", help="merge the FPA masks of several runs (bias, dark, flat defects) into one",
                               description="merge the EUC_MASK_FPA.fits of several fpa runs into one LE1-layout "
                                           "mask: the bitwise or of their DEFECTS bits per pixel, with each source's "
                                           "TEST, RUNID, OBSIDs and file in the primary header and the pixels of "
                                           "each bit per extension (tasks/fpa_masks.py)")
    masks.add_argument("sources", nargs="+", metavar="RESULT_DIR_OR_MASK",
                       help="a result folder of fpa run (DIR/SESSION/TEST, holding products/EUC_MASK_FPA.fits) or "
                            "the mask file itself")
    masks.add_argument("--out", required=True, metavar="FILE", help="the merged mask to write")
    masks.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    masks.add_argument("--json", action="store_true", help="the outcome as JSON")

    sim = actions.add_parser("simulate", help="write simulated LE1 bias, dark or flat (PTC01, FLAT01) frames with "
                                              "their FPA EXP_LOG and truths",
                             description="write simulated LE1 frames (145 HDUs each), the FPA EXP_LOG and "
                                         "LE1_TRUTHS.json (injected offset and RON per quadrant; for darks, "
                                         "dark current and hot pixels; for flats (PTC01, FLAT01), the gain, "
                                         "the PRNU, dead and low-response pixels, the frames following the "
                                         "catalogue's structure)")
    sim.add_argument("--out", required=True, metavar="DIR", help="gets the day folder DD_Mmm_YY/")
    sim.add_argument("--frames", type=int, help="exposures (default 10); flats (PTC01, FLAT01): at most this many "
                                                 "a fluence (default the structure's)")
    sim.add_argument("--test", default="BIAS01", help="test name logged (default BIAS01); DARK... gives darks, "
                                                      "PTC01 and FLAT01 flats")
    sim.add_argument("--fluences", type=int, metavar="K",
                     help="flats: only the first K fluences of the structure (default all: PTC01 11, FLAT01 3)")
    sim.add_argument("--dead-pixels", type=int, metavar="N",
                     help="flats: dead pixels per quadrant, and as many low-response ones (default 3 in FLAT01, "
                          "FLAT02, FLAT_STB; 0 otherwise)")
    sim.add_argument("--exptime", type=float, metavar="S",
                     help="exposure time (s): default 565 for a DARK test, 0 (biases) otherwise")
    sim.add_argument("--hot-pixels", type=int, metavar="N",
                     help="hot pixels per quadrant (default 4 in darks, 0 in biases)")
    sim.add_argument("--full", action="store_true", help="full-size quadrants (2128 x 2086, 1.3 GB a frame) "
                     "instead of the small test geometry (85 x 70)")
    sim.add_argument("--seed", type=int, default=1, help="random seed: same seed, same truths and pixels")
    sim.add_argument("--first-obsid", type=int, default=1000)
    sim.add_argument("--start", default="2019-12-02T09:00:00", help="acquisition start, ISO time (sets the day folder)")
    sim.add_argument("--design", default="final", choices=("final", "initial"))


def run(args: argparse.Namespace) -> int:
    if args.fpa_action == "simulate":
        return _simulate(args)
    if args.fpa_action == "run":
        return _run(args)
    if args.fpa_action == "masks":
        return _masks(args)
    print("error: give an action: vison-engine fpa run ..., fpa masks ... or fpa simulate ... (--help)",
          file=sys.stderr)
    return EXIT_INPUT


def _run(args: argparse.Namespace) -> int:
    from ..campaign.executor_spec import parse_executor
    from ..pipeline.fpa_run import FPAInputError, FPARequest, run_fpa
    from ..tasks.executor import ExecutorUnavailable, check_cluster, open_executor
    from ..tasks.fpa_family import NotInFPAMode, fpa_family_for

    try:
        fpa = fpa_family_for(args.test)  # before anything is opened: a test the FPA mode does not analyse
    except NotInFPAMode as exc:
        return _error(args, str(exc))
    try:
        obsids = _obsid_range(args.obsids) if args.obsids else None
        spec = parse_executor(args.executor) if args.executor else None
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs {args.jobs}: expected a number >= 1")
    except ValueError as exc:
        return _error(args, str(exc))
    if not Path(args.data).is_dir():
        return _error(args, f"no day folder {args.data}")
    request = FPARequest(day=Path(args.data), test=args.test, results=Path(args.results), session=args.session,
                         obsids=obsids, design=args.design, maps=tuple(args.map), meta=args.meta)
    try:
        if spec is not None and not spec.is_local:  # a scheduler, workers, this vison, the data seen
            writes = []
            # the units write their master planes (a flat's consumer its staged planes) under the results folder
            if request.meta or (fpa.consumer is not None and fpa.consumer.writes):
                request.results.mkdir(parents=True, exist_ok=True)
                writes.append(request.results)
            check_cluster(spec, read=[request.day], write=writes)
        executor = open_executor(spec, args.jobs)
    except ExecutorUnavailable as exc:
        return _error(args, str(exc))
    try:
        outcome = run_fpa(request, executor, say=(lambda line: None) if args.json else print)
    except FPAInputError as exc:
        return _error(args, str(exc))
    finally:
        executor.close()
    record = outcome.record
    if args.json:
        print(json.dumps({"folder": str(outcome.folder), "exposures": record["exposures"], "flags": record["flags"],
                          "figures": record["figures"], "products": record["products"],
                          "subtasks": record["subtasks"], "errors": record["error_messages"],
                          "notes": record["notes"]}, indent=2))
        return EXIT_ERRORS if record["errors"] else EXIT_OK
    print(f"Wrote {outcome.folder / 'result.json'} ({record['exposures']} frames, {len(record['ccds'])} CCDs); "
          f"maps: {', '.join(record['figures']) or 'none'}; products: {', '.join(record['products']) or 'none'}")
    for reason in record["flag_reasons"]:
        where = " ".join(str(reason[k]) for k in ("ccd", "quadrant", "obsid") if k in reason)
        print(f"  {reason['flag']} {where}: {reason['reason']}")
    for note in record["notes"]:
        print(f"  note: {note}")
    for message in record["error_messages"]:
        print(f"error: {message}", file=sys.stderr)
    return EXIT_ERRORS if record["errors"] else EXIT_OK


def _masks(args: argparse.Namespace) -> int:
    from ..tasks.fpa_masks import BIT_VALUES, MaskMergeError, merge_fpa_masks

    try:
        merged = merge_fpa_masks(args.sources, args.out, force=args.force)
    except (MaskMergeError, FileExistsError) as exc:
        return _error(args, str(exc))
    except OSError as exc:  # writing the merge: a full disk, a folder not writable
        return _error(args, f"cannot write {args.out}: {exc.strerror or exc}")
    bits = {BIT_VALUES[keyword]: name for source in merged.sources for keyword, name in source.bits.items()}
    totals = {name: merged.total(value) for value, name in sorted(bits.items())}
    tests = [source.card("TEST", "?") for source in merged.sources]
    if args.json:
        print(json.dumps({"file": str(merged.path), "sources": [str(s.path) for s in merged.sources],
                          "tests": tests, "pixels": {**totals, "any": merged.total(0)}}, indent=2))
        return EXIT_OK
    print(f"Wrote {merged.path}: {len(merged.sources)} masks merged ({', '.join(tests)}), "
          f"{len(merged.counts)} quadrants; pixels flagged: "
          + ", ".join(f"{name} {count}" for name, count in totals.items()) + f", any {merged.total(0)}")
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    from ..formats.le1 import LE1_FULL, LE1_SMALL
    from ..sim.le1 import simulate_le1

    try:
        start = datetime.fromisoformat(args.start)
        if args.frames is not None and args.frames < 1:
            raise ValueError(f"--frames {args.frames}: expected a number >= 1")
        if args.fluences is not None and args.fluences < 1:
            raise ValueError(f"--fluences {args.fluences}: expected a number >= 1")
        if args.exptime is not None and args.exptime < 0:
            raise ValueError(f"--exptime {args.exptime:g}: expected seconds >= 0")
        if args.hot_pixels is not None and args.hot_pixels < 0:
            raise ValueError(f"--hot-pixels {args.hot_pixels}: expected a number >= 0")
        if args.dead_pixels is not None and args.dead_pixels < 0:
            raise ValueError(f"--dead-pixels {args.dead_pixels}: expected a number >= 0")
    except ValueError as exc:
        return _error(args, str(exc))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        sim = simulate_le1(args.out, test=args.test, frames=args.frames, seed=args.seed,
                           geometry=LE1_FULL if args.full else LE1_SMALL, design=args.design,
                           first_obsid=args.first_obsid, start=start, exptime=args.exptime,
                           hot_pixels=args.hot_pixels, fluences=args.fluences, dead_pixels=args.dead_pixels)
    except FileExistsError as exc:
        return _error(args, str(exc))
    print(f"Wrote {len(sim.frames)} LE1 frames of {args.test} (OBSIDs {sim.obsids[0]}-{sim.obsids[-1]}) into "
          f"{sim.day_folder}, with {sim.explog.name} and {sim.truths_file.name}")
    return EXIT_OK


def _obsid_range(text: str) -> tuple[int, int]:
    try:
        first, last = (int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"--obsids {text!r}: expected FIRST-LAST, e.g. 1000-1009") from None
    if first > last:
        raise ValueError(f"--obsids {text!r}: the first OBSID is after the last")
    return first, last


def _error(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"event": "error", "message": message}))
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INPUT
