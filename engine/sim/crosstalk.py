"""Electronic cross-talk between the 12 channels of a block, applied to one exposure's frames.

The ROE reads the 12 channels in step, so a victim pixel gains coefficient x the source's signal
at the same canonical pixel (Truths.crosstalk: row = source, column = victim). The source's
signal is its written level minus its offset: what the chain really carried, shot noise,
brighter-fatter and saturation included. A victim's new level is rounded stochastically (its own
random stream), so a coupling of a fraction of an ADU is not lost to rounding.
"""

from __future__ import annotations

import numpy as np

from engine.formats.geometry import QUADRANTS
from engine.sim.truths import Truths

ADC_MAX = 65535


def apply_crosstalk(frames: dict[int, np.ndarray], truths: Truths, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """New uint16 frames (ccd -> frame) with the couplings of `truths.crosstalk` added."""
    geometry = truths.ccd_geometry
    matrix = np.asarray(truths.crosstalk, float)
    channels = [(ccd, q) for ccd in sorted(truths.ccds) for q in QUADRANTS]
    signals = {}
    for index, (ccd, q) in enumerate(channels):
        if ccd in frames:
            view = geometry.quadrant(frames[ccd], q, canonical=True).astype(np.float64)
            signals[index] = view - truths.ccds[ccd].quadrants[q].offset_adu
    out = {ccd: frame.astype(np.float64) for ccd, frame in frames.items()}
    for victim, (ccd, q) in enumerate(channels):
        if ccd not in out:
            continue
        added = sum(matrix[source, victim] * signal for source, signal in signals.items() if source != victim)
        view = geometry.quadrant(out[ccd], q, canonical=True)
        view += added
    result = {}
    for ccd, frame in out.items():
        noisy = np.floor(frame + rng.uniform(size=frame.shape))
        # pixels the ADC clipped or lost stay as they were
        keep = (frames[ccd] == ADC_MAX) | (frames[ccd] == 0)
        noisy[keep] = frames[ccd][keep]
        result[ccd] = np.clip(noisy, 0, ADC_MAX).astype(np.uint16)
    return result
