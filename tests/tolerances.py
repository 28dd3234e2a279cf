"""Float comparisons that hold on any CPU: tolerances derived from the dtype and the magnitude of
what is compared, never a fixed ``atol``.

Two computations that are mathematically equal but add their terms in another order (a tree
rollout against full sequences, one process against two, AVX-512 kernels against the plain
ones that ``ATEN_CPU_CAPABILITY=default`` selects) agree only up to rounding. For a sum of
``terms`` terms that error is at most about ``terms * eps * sum(|term|)`` (Higham, *Accuracy
and Stability of Numerical Algorithms*, section 4.2). The sum of the |terms| is not known
from outside, so the scale here is the largest |element| of the expected tensor: an element
that is a small difference of large terms keeps the rounding of those large terms, so its
own size is no scale at all (a gradient element 1e-3 of the tensor's largest differed by
5e-3 of itself between two CPUs, and a relative tolerance of 1e-4 on it failed).

Each call site says which dtype rounds (Llama's RMSNorm and eager softmax round through
float32 even in a float64 model) and how many terms feed one element.
"""

from __future__ import annotations

import torch


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of a floating dtype: the spacing of its numbers just above 1."""
    return torch.finfo(dtype).eps


def rounding_tolerance(expected: torch.Tensor, *, terms: int, dtype: torch.dtype | None = None,
                       ulps: float = 1.0) -> float:  # fmt: skip
    """Largest difference that rounding explains: ``ulps * terms * eps(dtype) * max|expected|``.

    ``dtype`` is the precision the computation rounds at (default: ``expected``'s own).
    """
    if terms < 1:
        raise ValueError(f"terms must be at least 1, got {terms}")
    scale = expected.detach().abs().max().item() if expected.numel() else 0.0
    return ulps * terms * eps(dtype or expected.dtype) * scale


def assert_equal_up_to_rounding(actual: torch.Tensor, expected: torch.Tensor, *, terms: int,
                                dtype: torch.dtype | None = None, ulps: float = 1.0,
                                msg: str = "") -> None:  # fmt: skip
    """``actual`` equals ``expected`` elementwise up to the rounding of ``terms`` summed terms.

    Fails on a shape or dtype mismatch, on NaN, and when any element differs by more than
    :func:`rounding_tolerance`; the message gives the largest difference in units of it.
    """
    assert actual.shape == expected.shape, f"{msg} shapes {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{msg} dtypes {actual.dtype} != {expected.dtype}"
    assert not expected.isnan().any() and not actual.isnan().any(), f"{msg} NaN"
    tol = rounding_tolerance(expected, terms=terms, dtype=dtype, ulps=ulps)
    worst = (actual.detach() - expected.detach()).abs().max().item() if expected.numel() else 0.0
    assert worst <= tol, (
        f"{msg} differs by {worst:.3g}, more than rounding explains: {tol:.3g} = {ulps} ulps x "
        f"{terms} terms x eps({dtype or expected.dtype}) x max|expected|"
    )


def approx_up_to_rounding(expected, *, terms: int, dtype: torch.dtype = torch.float32):
    """``pytest.approx`` of a number or list of numbers that a ``dtype`` computation rounded:
    absolute tolerance :func:`rounding_tolerance` of the largest |expected|."""
    import pytest

    values = torch.tensor(expected, dtype=torch.float64)
    return pytest.approx(expected, rel=0, abs=rounding_tolerance(values, terms=terms, dtype=dtype))
