import torch
from hypothesis import given
from hypothesis import strategies as st

from mosaic.layers.scan import decay_scan, decay_scan_reference, gated_scan, gated_scan_reference, safe_log


@given(
    batch=st.integers(1, 3), length=st.integers(1, 70), width=st.integers(1, 5), chunk=st.integers(1, 17),
    low=st.floats(0.001, 0.999), seed=st.integers(0, 2**16),
)
def test_decay_scan_matches_loop(batch, length, width, chunk, low, seed):
    generator = torch.Generator().manual_seed(seed)
    decays = torch.empty(width).uniform_(low, 0.999, generator=generator)
    v = torch.randn(batch, length, width, generator=generator)
    h0 = torch.randn(batch, width, generator=generator)
    fast = decay_scan(v, torch.log(decays), h0, chunk)
    torch.testing.assert_close(fast, decay_scan_reference(v, torch.log(decays), h0), atol=1e-4, rtol=1e-4)


@given(
    batch=st.integers(1, 3), length=st.integers(1, 70), groups=st.integers(1, 3), width=st.integers(1, 4),
    chunk=st.integers(1, 17), zero_rate=st.floats(0.0, 0.5), seed=st.integers(0, 2**16),
)
def test_gated_scan_matches_loop_including_zero_decays(batch, length, groups, width, chunk, zero_rate, seed):
    generator = torch.Generator().manual_seed(seed)
    a = torch.empty(batch, length, groups).uniform_(0.001, 0.999, generator=generator)
    a = torch.where(torch.rand(a.shape, generator=generator) < zero_rate, torch.zeros_like(a), a)
    b = torch.randn(batch, length, groups, width, generator=generator)
    h0 = torch.randn(batch, groups, width, generator=generator)
    fast = gated_scan(safe_log(a), b, h0, chunk)
    torch.testing.assert_close(fast, gated_scan_reference(safe_log(a), b, h0), atol=1e-4, rtol=1e-4)


def test_extreme_decays_stay_finite_with_finite_gradients():
    length = 4096
    decays = torch.tensor([0.001, 0.01, 0.3, 0.5, 0.9, 0.999], requires_grad=True)
    v = torch.randn(2, length, 6, requires_grad=True)
    h = decay_scan(v, torch.log(decays), torch.zeros(2, 6), chunk=64)
    gate = torch.rand(2, length, 6).clamp(0.0, 1.0)
    gate[:, ::7] = 0.0  # exact zeros: a full reset
    g = gated_scan(safe_log(gate.requires_grad_()), v[..., None], torch.zeros(2, 6, 1), chunk=64)
    (h.square().mean() + g.square().mean()).backward()
    for tensor in (h, g, decays.grad, v.grad, gate.grad):
        assert torch.isfinite(tensor).all()
    # the closed form lambda^t * cumsum(x lambda^-t) overflows here; the chunked scan does not
    assert torch.isinf(torch.tensor(0.3) ** -torch.arange(length, dtype=torch.float32)).any()
    torch.testing.assert_close(h[:, -200:], decay_scan_reference(v, torch.log(decays), torch.zeros(2, 6))[:, -200:],
                               atol=1e-4, rtol=1e-4)
