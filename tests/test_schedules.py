"""The learning-rate schedules of :mod:`mlplab.optim.schedules` by the course's formulas
(PyTorch comparisons are in ``test_torch_compare.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from mlplab.errors import ConfigError
from mlplab.optim import Cosine, Cyclic, LinearDecay, Ramp, StepDecay


def _course_cyclic(t, eta_min, eta_max, n_s):
    c = t // (2 * n_s)
    if 2 * c * n_s <= t <= (2 * c + 1) * n_s:
        return eta_min + (t - 2 * c * n_s) / n_s * (eta_max - eta_min)
    return eta_max - (t - (2 * c + 1) * n_s) / n_s * (eta_max - eta_min)


def test_cyclic_equals_course_formula_and_turning_points():
    s = Cyclic(1e-5, 1e-1, 500)
    for t in range(0, 3001, 7):
        assert np.isclose(s(t), _course_cyclic(t, 1e-5, 1e-1, 500), rtol=1e-12, atol=1e-15)
    for c in range(3):
        assert np.isclose(s(2 * c * 500), 1e-5, rtol=1e-9)
        assert np.isclose(s((2 * c + 1) * 500), 1e-1, rtol=1e-12)


def test_cyclic_with_an_asymmetric_cycle_climbs_and_falls_at_its_own_rates():
    s = Cyclic(0.0 + 1e-4, 1.0, 10, step_size_down=30)
    assert s.cycle_length == 40
    assert np.isclose(s(5), 1e-4 + 0.5 * (1.0 - 1e-4))  # halfway up
    assert np.isclose(s(10), 1.0) and np.isclose(s(25), 1e-4 + 0.5 * (1.0 - 1e-4))
    assert np.isclose(s(40), 1e-4) and np.isclose(s(45), s(5))  # the next cycle repeats


def test_linear_decay_and_cosine_reach_their_end_and_stay():
    lin, cos = LinearDecay(0.2, 100, lr_end=0.02), Cosine(0.2, 100, lr_min=0.02)
    assert lin(0) == cos(0) == 0.2
    assert np.isclose(lin(50), 0.11) and np.isclose(cos(50), 0.11)  # both halfway at t/2
    assert np.isclose(cos(25), 0.02 + 0.18 * (1 + np.cos(np.pi / 4)) / 2)
    for t in (100, 101, 10_000):
        assert np.isclose(lin(t), 0.02) and np.isclose(cos(t), 0.02)


def test_step_decay_multiplies_by_gamma_every_step_size_updates():
    s = StepDecay(0.1, 30, 0.5)
    assert [s(t) for t in (0, 29, 30, 59, 60)] == [0.1, 0.1, 0.05, 0.05, 0.025]


def test_ramp_goes_from_lr_min_to_lr_max_linearly_or_geometrically():
    lin, geo = Ramp(1e-4, 1.0, 100), Ramp(1e-4, 1.0, 100, mode="exp")
    assert np.isclose(lin(0), 1e-4) and np.isclose(lin(100), 1.0)
    assert np.isclose(lin(50), (1e-4 + 1.0) / 2)
    assert np.isclose(geo(50), 1e-2)  # the geometric mean of the ends
    assert np.isclose(geo(0), 1e-4) and np.isclose(geo(100), 1.0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Cyclic(0.1, 0.01, 10), "must not exceed"),
        (lambda: Cyclic(1e-5, 0.1, 0), "n_s"),
        (lambda: Cosine(0.1, 100, lr_min=0.5), "lr_min"),
        (lambda: StepDecay(0.1, 0), "step_size"),
        (lambda: LinearDecay(0.1, 10, lr_end=-1.0), "lr_end"),
    ],
)
def test_impossible_schedules_are_one_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
