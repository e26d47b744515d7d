"""The injection-curve fits' analytic Jacobians (chinj_lib.ig1_jacobian, idl_jacobian).

Error budget: the Jacobians against central differences of the models (step 1e-6 of each
parameter's scale): relative 1e-6 (the differences' truncation and rounding are ~1e-9 relative;
a wrong sign or factor is off by 100 %). The fits with the Jacobian against the finite-difference
fits on well-sampled curves (18 and 12 points, as CHINJ01/02): thresholds and notch within
1e-6 V, levels within 1e-4 ADU (both converge to the one minimum; the stopping tolerances
leave ~1e-10 V on CHINJ01's full-size curves).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.tasks import chinj_lib
from engine.tasks.chinj_lib import (
    IDL_PARAMS,
    IG1_PARAMS,
    idl_jacobian,
    idl_model,
    ig1_jacobian,
    ig1_model,
)

VOLTS = np.linspace(2.0, 8.0, 25) + 0.013  # no voltage exactly at a notch (the model's kink)


def central_differences(model, volts, params):
    columns = []
    for i, value in enumerate(params):
        step = 1e-6 * max(abs(value), 1.0)
        up, down = list(params), list(params)
        up[i], down[i] = value + step, value - step
        columns.append((model(volts, *up) - model(volts, *down)) / (2 * step))
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("params", [(3.0, 12.0, 3.4, 6.0, 5500.0, 600.0), (-20.0, 4.0, 4.1, 5.2, 300.0, 50.0),
                                    (0.0, 40.0, 2.9, 7.5, 6000.0, 0.0)])
def test_the_ig1_jacobian_is_the_derivative_of_the_model(params):
    analytic = ig1_jacobian(VOLTS, *params)
    assert analytic.shape == (VOLTS.size, len(IG1_PARAMS))
    numeric = central_differences(ig1_model, VOLTS, params)
    assert np.allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


@pytest.mark.parametrize("params", [(0.0, 9000.0, 15.0, 5.5), (12.0, 300.0, 3.0, 4.2), (-5.0, 20000.0, 60.0, 6.9)])
def test_the_idl_jacobian_is_the_derivative_of_the_model(params):
    analytic = idl_jacobian(VOLTS, *params)
    assert analytic.shape == (VOLTS.size, len(IDL_PARAMS))
    numeric = central_differences(idl_model, VOLTS, params)
    assert np.allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def finite_difference_fits(patch, fitter, volts, levels):
    """The same fit with scipy's finite differences (the fits before the Jacobians)."""
    plain = chinj_lib._least_squares
    with patch.context() as inner:
        inner.setattr(chinj_lib, "_least_squares", lambda model, jacobian, *a: plain(model, None, *a))
        return fitter(volts, levels)


@pytest.mark.parametrize("seed", range(3))
def test_the_fits_with_the_jacobians_are_the_finite_difference_fits(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    volts = np.linspace(2.0, 8.0, 18)
    truth = ig1_model(volts, 0.0, 12.0 + seed, 3.4 + 0.1 * seed, 6.0, 5500.0, 600.0)
    levels = truth * (1 + 0.01 * rng.standard_normal(18))
    fast, slow = chinj_lib.fit_ig1_curve(volts, levels), finite_difference_fits(monkeypatch, chinj_lib.fit_ig1_curve,
                                                                                volts, levels)
    assert fast.ok and slow.ok
    for name, tolerance in (("threshold", 1e-6), ("notch", 1e-6), ("notch_level", 1e-4), ("slope", 1e-4)):
        assert fast.get(name) == pytest.approx(slow.get(name), abs=tolerance), name
    assert abs(fast.get("threshold") - (3.4 + 0.1 * seed)) < 0.1 and abs(fast.get("notch") - 6.0) < 0.1
    volts = np.linspace(3.0, 9.0, 12)
    levels = idl_model(volts, 0.0, 9000.0, 8.0 + seed, 5.5 + 0.1 * seed) * (1 + 0.01 * rng.standard_normal(12))
    fast, slow = chinj_lib.fit_idl_curve(volts, levels), finite_difference_fits(monkeypatch, chinj_lib.fit_idl_curve,
                                                                                volts, levels)
    assert fast.ok and slow.ok
    assert fast.get("threshold") == pytest.approx(slow.get("threshold"), abs=1e-6)
    assert fast.get("amplitude") == pytest.approx(slow.get("amplitude"), abs=1e-4)
    assert abs(fast.get("threshold") - (5.5 + 0.1 * seed)) < 0.1
