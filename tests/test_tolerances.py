"""The float comparison helper (tests/tolerances.py) passes rounding and fails anything more."""

from __future__ import annotations

import pytest
import torch
from tolerances import approx_up_to_rounding, assert_equal_up_to_rounding, rounding_tolerance

pytestmark = pytest.mark.numerics


def test_the_tolerance_is_terms_times_eps_times_the_largest_element():
    expected = torch.tensor([0.5, -4.0, 2.0])
    eps32 = torch.finfo(torch.float32).eps
    assert rounding_tolerance(expected, terms=10) == pytest.approx(10 * eps32 * 4.0)
    assert rounding_tolerance(expected, terms=10, dtype=torch.bfloat16) == pytest.approx(
        10 * torch.finfo(torch.bfloat16).eps * 4.0
    )
    with pytest.raises(ValueError, match="terms"):
        rounding_tolerance(expected, terms=0)


def test_a_sum_in_another_order_passes_and_a_wrong_term_fails():
    g = torch.Generator().manual_seed(0)
    terms = torch.randn(1000, 8, generator=g)
    forward = terms.sum(0)
    backward = terms.flip(0).cumsum(0)[-1]  # the same sum in another order
    assert not torch.equal(forward, backward)  # the orders really round differently
    assert_equal_up_to_rounding(backward, forward, terms=1000)
    wrong = forward.clone()
    wrong[3] += 1e-3 * forward.abs().max()  # one element off by 0.1% of the scale
    with pytest.raises(AssertionError, match="more than rounding explains"):
        assert_equal_up_to_rounding(wrong, forward, terms=1000)


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        (torch.zeros(2), torch.zeros(3)),  # shape
        (torch.zeros(3, dtype=torch.float64), torch.zeros(3)),  # dtype
        (torch.tensor([0.0, torch.nan]), torch.tensor([0.0, 1.0])),  # NaN
        (torch.tensor([0.0, 1e-30]), torch.zeros(2)),  # all-zero expected: exact only
    ],
)
def test_shape_dtype_nan_and_any_difference_from_zeros_fail(actual, expected):
    with pytest.raises(AssertionError):
        assert_equal_up_to_rounding(actual, expected, terms=4)


def test_approx_for_plain_numbers():
    eps32 = torch.finfo(torch.float32).eps
    assert 10.0 + 30 * eps32 == approx_up_to_rounding(10.0, terms=4)  # 3 ulps of 10 < 4 x 10
    assert [1.0, 10.0 + 50 * eps32] != approx_up_to_rounding([1.0, 10.0], terms=4)
