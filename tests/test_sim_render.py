"""The ELVIS simulator draws what its truths say: each test recovers one injected number."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from engine.formats.geometry import FULL, HALF_OF_QUADRANT, QUADRANTS, SMALL
from engine.sim.render import CCDState, Exposure, render_frame
from engine.sim.truths import SimOptions, Truths, dipole_polarity, draw_truths, pumped_electrons

SERIALS = {1: "14471-14-01", 2: "14471-14-02", 3: "14471-14-03"}
QUIET = dict(cosmics=False, cosmetics=False)  # no outliers where a test averages pixels


def make_truths(seed: int = 11, **options) -> Truths:
    return draw_truths(seed, SMALL, SERIALS, options=SimOptions(**options))


def render_sequence(truths: Truths, exposures: list[Exposure], seed: int = 0, ccd: int = 1) -> list[np.ndarray]:
    state, rng = CCDState(), np.random.default_rng(seed)
    return [render_frame(SMALL, e, truths.ccds[ccd], truths, rng, state) for e in exposures]


def canonical(frame: np.ndarray, quadrant: str) -> np.ndarray:
    return SMALL.quadrant(frame, quadrant, canonical=True).astype(np.float64)


def image(frame: np.ndarray, quadrant: str) -> np.ndarray:
    return SMALL.region(frame, quadrant, "image").astype(np.float64)


def flat(e_per_pixel: float, t0: float = 0.0) -> Exposure:
    return Exposure(exptime=10.0, source="flat", flat_e_per_s=e_per_pixel / 10.0, seconds_since_start=t0)


def injection(id_dly_factor: float, **extra) -> Exposure:
    settings = dict(
        chinj=1, chinj_on=10, chinj_of=10, idl=11.0, ig2={"T": 6.0, "B": 6.0}, toi_ch=500.0, id_wid=60.0,
        ig1={(1, "T"): 4.0, (1, "B"): 4.0},
    )
    settings.update(extra)
    return Exposure(id_dly=id_dly_factor * settings["toi_ch"], **settings)


# -- truths ----------------------------------------------------------------------------------


def test_truths_round_trip_through_json(tmp_path):
    truths = draw_truths(5, SMALL, SERIALS, best_focus_mm={800: 47.21, 590: 47.0})
    path = truths.save(tmp_path / "truths.json")
    again = Truths.load(path)
    assert again.to_json() == truths.to_json()
    assert again.ccd_geometry == SMALL
    assert set(again.psf.best_focus_mm) == {800, 590}
    assert abs(again.psf.best_focus_mm[800] - 47.21) <= 0.3
    for ccd in again.ccds.values():
        assert ccd.serial == SERIALS[ccd.ccd]
        for q in ccd.quadrants.values():
            assert 2500 <= q.offset_adu <= 2950 and 1.0 <= q.ron_adu <= 1.4 and 3.1 <= q.gain_e_per_adu <= 3.5
            assert q.vertical_traps and q.serial_traps
    assert draw_truths(5, SMALL, SERIALS).to_json() == draw_truths(5, SMALL, SERIALS).to_json()
    assert draw_truths(6, SMALL, SERIALS).to_json() != draw_truths(5, SMALL, SERIALS).to_json()


def test_injection_curve_has_threshold_and_notch():
    curve = make_truths().ccds[1].quadrants["E"].injection
    ig1 = np.arange(2.5, 7.0, 0.25)
    levels = np.array([curve.level_e(v, idl=11.0, ig2=6.0) for v in ig1])
    threshold = 11.0 - curve.threshold_dv
    assert levels[ig1 < threshold - 0.5].max() < 0.05 * levels.max()  # nothing below threshold
    assert levels[ig1 > 6.0 + curve.notch_offset_v + 0.3] == pytest.approx(curve.notch_level_e, rel=0.01)
    idl = np.arange(9.5, 12.75, 0.25)  # CHINJ02: falling with IDL
    assert np.all(np.diff([curve.level_e(4.0, v, 6.0) for v in idl]) <= 0)


# -- frames ----------------------------------------------------------------------------------


def test_bias_offsets_and_read_noise_match_truths():
    truths = make_truths()
    frames = render_sequence(truths, [Exposure() for _ in range(10)])
    assert frames[0].dtype == np.uint16 and frames[0].shape == SMALL.shape
    for quadrant in QUADRANTS:
        truth = truths.ccds[1].quadrants[quadrant]
        pixels = np.concatenate(
            [SMALL.region(f, quadrant, r).astype(float).ravel() for f in frames for r in ("prescan", "overscan")]
        )
        assert pixels.mean() == pytest.approx(truth.offset_adu, abs=0.3)
        assert pixels.std() == pytest.approx(truth.ron_adu, rel=0.05)


def test_dark_signal_is_dark_current_times_exptime():
    truths = make_truths(**QUIET)
    exptime = 36000.0  # long enough that a fraction of an electron per hour shows above the noise
    frames = render_sequence(truths, [Exposure(exptime=exptime, shutter=False)] * 4)
    for quadrant in QUADRANTS:
        truth = truths.ccds[1].quadrants[quadrant]
        signal = np.mean([image(f, quadrant).mean() for f in frames]) - truth.offset_adu
        expected = truth.dark_e_per_pix_per_hour * exptime / 3600.0 / truth.gain_e_per_adu
        assert signal == pytest.approx(expected, abs=0.05)


def test_flat_level_and_photon_transfer_give_the_gain():
    truths = make_truths(bf=False, **QUIET)
    level_e = 100_000.0
    frames = render_sequence(truths, [flat(level_e) for _ in range(8)])
    for quadrant in QUADRANTS:
        truth = truths.ccds[1].quadrants[quadrant]
        images = [image(f, quadrant) - truth.offset_adu for f in frames]
        assert np.mean(images) == pytest.approx(truth.expected_adu(level_e), rel=0.005)
        pairs = list(zip(images[0::2], images[1::2]))
        variance = np.mean([np.var(a - b) / 2 for a, b in pairs])
        mean = np.mean([(a.mean() + b.mean()) / 2 for a, b in pairs])
        assert variance / mean == pytest.approx(1.0 / truth.gain_e_per_adu, rel=0.04)


def test_brighter_fatter_correlates_neighbours_more_at_high_signal():
    truths = make_truths(**QUIET)

    def neighbour_correlation(level_e: float) -> float:
        frames = render_sequence(truths, [flat(level_e) for _ in range(16)])
        values = []
        for a, b in zip(frames[0::2], frames[1::2]):
            for quadrant in QUADRANTS:
                d = image(a, quadrant) - image(b, quadrant)
                d -= d.mean()
                values.append(np.mean(d[1:, :] * d[:-1, :]) / d.var())
        return float(np.mean(values))

    quadrants = truths.ccds[1].quadrants.values()
    predicted = np.mean([q.bf_strength * 160_000.0 / q.full_well_e for q in quadrants])
    high, low = neighbour_correlation(160_000.0), neighbour_correlation(10_000.0)
    assert high == pytest.approx(predicted, rel=0.4)
    assert high - low > 0.5 * predicted


@pytest.mark.parametrize("factor, half", [(2.5, "B"), (1.5, "T")])
def test_injection_reaches_only_the_half_the_drain_delay_selects(factor, half):
    truths = make_truths(**QUIET)
    (frame,) = render_sequence(truths, [injection(factor)])
    for quadrant in QUADRANTS:
        truth = truths.ccds[1].quadrants[quadrant]
        rows = image(frame, quadrant) - truth.offset_adu
        if HALF_OF_QUADRANT[quadrant] != half:
            assert abs(rows.mean()) < 0.1
            continue
        expected = truth.expected_adu(truth.injection.level_e(4.0, 11.0, 6.0))
        on_rows = rows[2:10].mean(axis=1)  # 10 on / 10 off from row 0; skip the CTI-depleted first lines
        assert np.median(on_rows) == pytest.approx(expected, rel=0.03)
        # CTI: the first line after a block holds more trailed charge than the last of the gap.
        assert rows[10].mean() > rows[19].mean() + 3 * truth.ron_adu / math.sqrt(rows.shape[1])


def isolated(positions: list[tuple[int, int]], here: tuple[int, int], reach: int = 2) -> bool:
    """No other trap within `reach` pixels along the dipole: overlapping dipoles add up."""
    return sum(1 for p in positions if p[0] == here[0] and abs(p[1] - here[1]) <= reach) == 1


def test_vertical_and_serial_trap_pumping_make_dipoles_at_the_truth_traps():
    truths = make_truths(bf=False, **QUIET)  # brighter-fatter would soften the dipoles by ~1 %
    ccd = truths.ccds[1]
    unpumped = dict(chinj_on=SMALL.image_rows, chinj_of=0)
    checked = 0
    for quadrant in ("E", "F"):  # the half 2.5 x toi_ch injects
        truth = ccd.quadrants[quadrant]
        vertical = [(t.col, t.row) for t in truth.vertical_traps]
        for trap in truth.vertical_traps:
            if not isolated(vertical, (trap.col, trap.row)):
                continue
            mode = next(m for m in (123, 234, 341, 412) if dipole_polarity(m, trap.phase) == 1)
            toi = trap.tau_us * math.log(2.0)  # the phase time that pumps this trap best
            pumping = dict(unpumped, v_tpump=1, v_tp_mod=mode, v_tp_cnt=20000, toi_tp=toi)
            (frame,) = render_sequence(truths, [injection(2.5, **pumping)])
            q = canonical(frame, quadrant)
            contrast = q[trap.row + 1, trap.col] - q[trap.row, trap.col]
            moved = pumped_electrons(20000, toi, trap.tau_us, trap.pc) / truth.gain_e_per_adu
            assert contrast == pytest.approx(2 * moved, abs=450), (quadrant, trap)  # 5 sigma of 2-pixel noise
            checked += 1
        serial = [(0, t.col) for t in truth.serial_traps]
        for trap in truth.serial_traps:
            if not isolated(serial, (0, trap.col)):
                continue
            mode = next(m for m in (23, 31) if dipole_polarity(m, trap.phase))
            sign = dipole_polarity(mode, trap.phase)
            dwell = max(0.0, trap.tau_us * math.log(2.0) - 4.75)
            pumping = dict(unpumped, s_tpump=1, s_tp_mod=mode, s_tp_cnt=20000, dwell_s=dwell)
            # As TP02 does, take out the injection's column profile with an unpumped frame.
            frame, background = render_sequence(truths, [injection(2.5, **pumping), injection(2.5, **unpumped)])
            profile = (canonical(frame, quadrant) - canonical(background, quadrant))[: SMALL.image_rows].mean(axis=0)
            contrast = profile[trap.col + sign] - profile[trap.col]
            moved = pumped_electrons(20000, 4.75 + dwell, trap.tau_us, trap.pc) / truth.gain_e_per_adu
            assert contrast == pytest.approx(2 * moved, abs=80), (quadrant, trap)  # 5 sigma of a column mean
            checked += 1
    assert checked >= 4


def spot_moments(frame: np.ndarray, quadrant: str, row: float, col: float, offset: float, half: int = 7):
    q = canonical(frame, quadrant) - offset
    r0, c0 = int(round(row)) - half, int(round(col)) - half
    stamp = q[r0 : r0 + 2 * half + 1, c0 : c0 + 2 * half + 1]
    rr, cc = np.mgrid[r0 : r0 + 2 * half + 1, c0 : c0 + 2 * half + 1]
    total = stamp.sum()
    cr, ccol = (stamp * rr).sum() / total, (stamp * cc).sum() / total
    var = ((stamp * (rr - cr) ** 2).sum() + (stamp * (cc - ccol) ** 2).sum()) / (2 * total)
    return cr, ccol, 2.3548 * math.sqrt(var - 1.0 / 12.0)  # remove the pixel's own width


def test_point_source_spots_sit_at_the_truth_positions_and_blur_out_of_focus():
    truths = make_truths(**QUIET)
    focus = truths.psf.best_focus_mm[800]

    def point(mirr_pos: float) -> Exposure:
        return Exposure(exptime=1.0, source="point", spot_e_per_s=150_000.0, mirr_pos=mirr_pos, wavelength_nm=800)

    in_focus, defocused = render_sequence(truths, [point(focus), point(focus + 0.8)])
    best = truths.psf.fwhm_best_px[800]
    for quadrant in QUADRANTS:
        offset = truths.ccds[1].quadrants[quadrant].offset_adu
        spots = truths.psf.spots[1][quadrant]
        for spot in spots:
            row, col, fwhm = spot_moments(in_focus, quadrant, spot.row, spot.col, offset)
            assert (row, col) == (pytest.approx(spot.row, abs=0.2), pytest.approx(spot.col, abs=0.2))
            assert fwhm == pytest.approx(best, rel=0.1)
            wider = spot_moments(defocused, quadrant, spot.row, spot.col, offset)[2]
            assert wider == pytest.approx(truths.psf.fwhm_px(focus + 0.8, focus, 800), rel=0.1)
            assert wider > fwhm + 0.5
        # The pattern reads the same on the frame for every quadrant: ALPHA top-left, ECHO bottom-right.
        frame_rows = {s.name: SMALL.quad_height - 1 - s.row if SMALL.flips(quadrant)[0] else s.row for s in spots}
        frame_cols = {s.name: SMALL.quad_width - 1 - s.col if SMALL.flips(quadrant)[1] else s.col for s in spots}
        assert frame_rows["ALPHA"] > frame_rows["DELTA"] and frame_cols["ALPHA"] < frame_cols["BRAVO"]
        assert frame_rows["ECHO"] < frame_rows["BRAVO"] and frame_cols["ECHO"] > frame_cols["DELTA"]


def test_persistence_after_a_saturating_frame():
    truths = make_truths(**QUIET)
    dark = 565.0
    saturating = Exposure(exptime=100.0, source="flat", flat_e_per_s=5000.0, seconds_since_start=700.0)
    sequence = [
        Exposure(exptime=dark, shutter=False, seconds_since_start=0.0),
        saturating,
        Exposure(exptime=dark, shutter=False, seconds_since_start=900.0),
    ]
    before, _, after = render_sequence(truths, sequence)
    for quadrant in QUADRANTS:
        truth = truths.ccds[1].quadrants[quadrant]
        excess = image(after, quadrant).mean() - image(before, quadrant).mean()
        released = truth.persistence_between(900.0 - 800.0, 900.0 + dark + 71.8 - 800.0)
        assert excess == pytest.approx(released / truth.gain_e_per_adu, rel=0.15)
        assert excess > 5.0


def test_rows_outside_the_window_are_zero():
    truths = make_truths()
    (frame,) = render_sequence(truths, [Exposure(vstart=10, vend=40)])
    for quadrant in QUADRANTS:
        q = SMALL.quadrant(frame, quadrant, canonical=True)
        assert not q[:10].any() and not q[40:].any()
        assert (q[10:40] > 2000).all()


def test_same_seed_same_bytes():
    truths = make_truths()
    sequence = [
        Exposure(),
        flat(50_000.0),
        Exposure(exptime=2.0, source="point", spot_e_per_s=1e5, mirr_pos=47.0),
        injection(2.5),
        Exposure(exptime=565.0, shutter=False, seconds_since_start=100.0),
    ]
    first = render_sequence(truths, sequence, seed=3)
    second = render_sequence(make_truths(), sequence, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], render_sequence(truths, sequence[:1], seed=4)[0])


def test_full_size_bias_renders_quickly():
    truths = draw_truths(1, FULL, SERIALS)
    state, rng = CCDState(), np.random.default_rng(0)
    render_frame(FULL, Exposure(), truths.ccds[1], truths, rng, state)  # warm-up: page in the arrays
    start = time.perf_counter()
    frame = render_frame(FULL, Exposure(), truths.ccds[1], truths, rng, state)
    elapsed = time.perf_counter() - start
    print(f"\nfull-size bias frame: {elapsed:.2f} s")
    assert frame.shape == FULL.shape
    assert elapsed < 10.0


def test_exposure_from_an_exp_log_row():
    row = {
        "ObsID": "1001", "exptime": "0.0", "chinj": "1", "chinj_on": "30", "chinj_of": "100",
        "id_dly": "1250", "toi_ch": "500", "id_wid": "60", "vstart": "0", "vend": "2086", "rdmode": "fwd_bas",
        "IDL": "11.0", "IDH": "18.0", "IG1_1_T": "4.5", "IG1_1_B": "4.25", "IG2_T": "6.0", "IG2_B": "6.0",
        "source": "flat", "mirr_pos": "47.2",
    }
    exposure = Exposure.from_log_row(row, shutter=False, seconds_since_start=12.0)
    assert exposure.chinj == 1 and exposure.chinj_of == 100 and exposure.vend == 2086
    assert exposure.idl == 11.0 and exposure.ig1_of(1, "B") == 4.25 and exposure.ig1_of(2, "T") == 6.0
    assert exposure.ig2_of("T") == 6.0 and exposure.injected_half() == "B"
    assert not exposure.lit and exposure.seconds_since_start == 12.0
