import io

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mosaic.core.errors import CheckpointError, ModelError
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig
from mosaic.layers.model import MosaicLM
from mosaic.layers.reference import reference_model_forward
from mosaic.layers.state import BlockState, MosaicState


def make_model(seed=0, chunk=4):
    torch.manual_seed(seed)
    block = MosaicBlockConfig(d_model=16, state_k=2, state_dim=4, mem_buckets=2, mem_assoc=2, mem_key_dim=8,
                              mem_dim=8, reg_slots=2, reg_dim=4, chunk_size=chunk)
    model = MosaicLM(MosaicLMConfig(vocab_size=30, n_layers=2, block=block), opcodes=None)
    with torch.no_grad():
        for block_module in model.blocks:
            for p in block_module.parameters():
                p.normal_(std=0.4)
    return model.eval()


@given(seed=st.integers(0, 1000), length=st.integers(2, 20), split=st.integers(0, 20), piece=st.integers(1, 7),
       chunk=st.integers(1, 6))
def test_chunked_prefill_then_steps_equals_one_forward(seed, length, split, piece, chunk):
    model = make_model(seed, chunk)
    ids = torch.randint(0, 30, (2, length))
    split = min(split, length - 1)
    with torch.no_grad():
        whole = model({"input_ids": ids}, model.init_state(2))
        logits = []
        state = model.init_state(2)
        if split:
            out = model.prefill(ids[:, :split], state, chunk_tokens=piece)
            logits.append(out.logits)
            state = out.state
        for t in range(split, length):
            out = model.step(ids[:, t], state)
            logits.append(out.logits[:, None])
            state = out.state
    assert (torch.cat(logits, dim=1) - whole.logits).abs().max() <= 1e-4
    assert state.position == length == whole.state.position
    for mine, theirs in zip(state.layers, whole.state.layers, strict=True):
        for name, tensor in mine.tensors().items():
            assert (tensor - theirs.tensors()[name]).abs().max() <= 1e-4, name


def test_model_matches_reference_model():
    model = make_model(3)
    ids = torch.randint(0, 30, (2, 13))
    with torch.no_grad():
        out = model({"input_ids": ids}, model.init_state(2))
        logits, aux, _ = reference_model_forward(model, {"input_ids": ids})
    assert (out.logits - logits).abs().max() <= 1e-4
    for name in out.aux:
        assert (out.aux[name] - aux[name]).abs().max() <= 1e-4, name


def test_state_save_restore_and_copy():
    model = make_model(1)
    ids = torch.randint(0, 30, (2, 9))
    with torch.no_grad():
        state = model.prefill(ids, chunk_tokens=4).state
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        # A state saved whole loads without unpickling code once its two classes are allow-listed.
        with torch.serialization.safe_globals([MosaicState, BlockState]):
            loaded = torch.load(buffer, weights_only=True)
        restored = MosaicState.from_state_dict(state.state_dict())
        copied = state.copy()
        next_ids = torch.tensor([3, 4])
        expected = model.step(next_ids, state).logits
        for other in (loaded, restored, copied):
            assert other.position == 9
            torch.testing.assert_close(model.step(next_ids, other).logits, expected)
        # stepping a copy leaves the original untouched
        before = state.state_dict()
        model.step(next_ids, copied)
        after = state.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(CheckpointError, match="unexpected"):
        MosaicState.from_state_dict({**state.state_dict(), "layers.0.bogus": torch.zeros(1)})
    with pytest.raises(ModelError, match="state is for batch 2"):
        model.step(torch.tensor([1, 2, 3]), state)


def test_step_time_does_not_grow_with_context():
    model = make_model(2)
    state = model.init_state(1)
    with torch.no_grad():
        state = model.prefill(torch.randint(0, 30, (1, 300)), state, chunk_tokens=100).state
        sizes_before = {k: v.shape for k, v in state.state_dict().items()}
        state = model.step(torch.tensor([5]), state).state
    assert {k: v.shape for k, v in state.state_dict().items()} == sizes_before  # constant-size state
