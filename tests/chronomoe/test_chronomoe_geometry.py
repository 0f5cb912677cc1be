"""Fisher–Rao distance and geodesic dimensionality of routing distributions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from chronomoe.geometry import fisher_rao_distance, geodesic_dimensionality


def test_fisher_rao_known_values() -> None:
    p = torch.tensor([1.0, 0.0])
    q = torch.tensor([0.0, 1.0])
    assert fisher_rao_distance(p, q).item() == pytest.approx(math.pi)  # disjoint supports: the maximum
    assert fisher_rao_distance(p, p).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((4,), 0.25)
    assert fisher_rao_distance(uniform, torch.tensor([0.5, 0.5, 0.0, 0.0])).item() == pytest.approx(
        2 * math.acos(2 * math.sqrt(0.125)))


def test_edge_changes_weigh_more_than_middle_changes() -> None:
    """Moving 1 % of mass off an expert at 1 % is a larger step than moving it between 50 % experts."""
    edge = fisher_rao_distance(torch.tensor([0.01, 0.99]), torch.tensor([0.0, 1.0]))
    middle = fisher_rao_distance(torch.tensor([0.50, 0.50]), torch.tensor([0.49, 0.51]))
    assert edge > 5 * middle


@given(st.integers(0, 10_000), st.integers(2, 9))
def test_fisher_rao_is_a_metric(seed: int, experts: int) -> None:
    g = torch.Generator().manual_seed(seed)
    p, q, r = torch.rand(3, experts, generator=g, dtype=torch.float64).softmax(-1)
    d = fisher_rao_distance
    assert d(p, q) == pytest.approx(d(q, p).item())
    assert 0.0 <= d(p, q).item() <= math.pi + 1e-12
    assert d(p, r) <= d(p, q) + d(q, r) + 1e-9


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_signatures_confined_to_k_directions_have_dimensionality_k(k: int) -> None:
    experts, n = 12, 4000
    g = torch.Generator().manual_seed(k)
    base = torch.full((experts,), experts ** -0.5, dtype=torch.float64)  # √ of the uniform distribution
    # k orthonormal directions tangent to the sphere at the base point
    directions = torch.linalg.qr(torch.cat([base[:, None], torch.randn(experts, k, generator=g,
                                                                          dtype=torch.float64)], 1))[0][:, 1:]
    coefficients = 0.05 * torch.randn(n, k, generator=g, dtype=torch.float64)
    root = base + coefficients @ directions.T  # stays positive for small steps
    distributions = root.square() / root.square().sum(-1, keepdim=True)
    assert geodesic_dimensionality(distributions).item() == pytest.approx(k, rel=0.08)


def test_identical_distributions_have_no_dimensionality() -> None:
    assert geodesic_dimensionality(torch.full((10, 4), 0.25)).item() == 0.0
