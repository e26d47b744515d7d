"""Where the simulated point-source pattern lands: shifted per CCD quadrant (an OGSE misalignment,
a different pattern per channel) or missing from a quadrant (a vignetted or unlit quadrant).

Shifts are in frame orientation (dx along the frame's columns, dy along its rows, pixels), the
way the analyses report the pattern's lock; the truths record the spots where they land.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.sim.truths import Spot, Truths


def place_pattern(truths: Truths, shifts: Mapping[tuple[int, str], tuple[float, float]],
                  unlit: frozenset[tuple[int, str]] | set[tuple[int, str]]) -> Truths:
    """Shift or remove the spots of the given (CCD, quadrant)s in place; returns `truths`."""
    geometry = truths.ccd_geometry
    for ccd, quadrants in truths.psf.spots.items():
        for quadrant, spots in quadrants.items():
            if (ccd, quadrant) in unlit:
                quadrants[quadrant] = []
                continue
            dx, dy = shifts.get((ccd, quadrant), (0.0, 0.0))
            if not (dx or dy):
                continue
            flip_rows, flip_cols = geometry.flips(quadrant)
            col_step, row_step = (-dx if flip_cols else dx), (-dy if flip_rows else dy)
            quadrants[quadrant] = [Spot(s.name, round(s.row + row_step, 3), round(s.col + col_step, 3)) for s in spots]
    return truths
