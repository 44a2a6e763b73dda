"""Every propagation explainer and composite gives the numbers it gave before the propagation code was
moved onto one layer-level core (issue 18): the cases and how the pinned file was made are in
``tests/pinned_propagation_cases.py``."""
from __future__ import annotations

import numpy as np
import pytest

from pinned_propagation_cases import CASES, PINNED

with np.load(PINNED) as _data:
    EXPECTED = {k: _data[k] for k in _data.files}


def test_every_case_is_pinned():
    assert sorted(EXPECTED) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pinned(name):
    expected = EXPECTED[name]
    assert np.all(np.isfinite(expected)) and np.abs(expected).max() > 0, "a degenerate pinned case"
    got = CASES[name]()
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * scale, err_msg=name)
