"""The recurrent single-token step (mosaic.layers.recurrent_step) is the chunked forward's twin: over
block sizes, batch sizes and opcode settings (control off, hard, soft; opcodes forced or not), a
stream of steps gives the logits, aux outputs and final state of one forward over the sequence."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mosaic.core.contract import keys
from mosaic.core.errors import ModelError
from mosaic.layers import recurrent_step
from mosaic.layers.block import MosaicBlock
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig
from mosaic.layers.model import MosaicLM

V = 23
N_OPCODES = 10

blocks = st.fixed_dictionaries({
    "d_model": st.sampled_from([8, 16, 24]),
    "conv_kernel": st.integers(1, 4),
    "state_k": st.integers(1, 3),
    "state_dim": st.sampled_from([2, 4]),
    "mem_buckets": st.sampled_from([2, 4, 8]),
    "mem_hashes": st.integers(1, 3),
    "mem_assoc": st.integers(1, 3),
    "mem_key_dim": st.sampled_from([4, 8]),
    "mem_dim": st.sampled_from([4, 8]),
    "mem_hard_writes": st.booleans(),
    "mem_route_by_key": st.booleans(),
    "mem_slot_policy": st.sampled_from(["ring", "router"]),
    "mem_ring_advance_at": st.sampled_from([0.0, 0.5]),
    "reg_slots": st.sampled_from([0, 1, 3]),
    "reg_dim": st.sampled_from([4, 8]),
    "commitment_head_enabled": st.booleans(),
    "chunk_size": st.integers(1, 5),
})
#: opcode head off, on without control, hard control, soft control, each control with gains in the state
controls = st.sampled_from([
    {"opcodes_enabled": False},
    {},
    {"opcodes_control_enabled": True},
    {"opcodes_control_enabled": True, "opcodes_control_soft": True},
    {"opcodes_control_enabled": True, "fusion_gates_state": True},
    {"opcodes_control_enabled": True, "opcodes_control_soft": True, "fusion_gates_state": True},
])


def build(block: dict, control: dict, seed: int, scale: float) -> MosaicLM:
    torch.manual_seed(seed)
    model = MosaicLM(MosaicLMConfig(vocab_size=V, n_layers=2, block=MosaicBlockConfig(**block, **control)))
    with torch.no_grad():  # weights large enough that routes, gates, slots and opcodes all vary
        for module in model.blocks:
            for parameter in module.parameters():
                parameter.normal_(std=scale)
    return model.eval()


def forced_batch(ids: torch.Tensor, opcodes: torch.Tensor | None) -> dict[str, torch.Tensor]:
    batch = {keys.INPUT_IDS.name: ids}
    if opcodes is not None:
        batch[keys.TEACHER_OPCODE.name] = opcodes
        batch[keys.TEACHER_FORCING.name] = torch.ones(ids.shape[0])
    return batch


@given(block=blocks, control=controls, seed=st.integers(0, 10_000), batch=st.integers(1, 3),
       length=st.integers(1, 10), prefix=st.integers(0, 6), force=st.booleans())
def test_steps_agree_with_the_chunked_forward(block, control, seed, batch, length, prefix, force) -> None:
    model = build(block, control, seed, scale=0.2)
    ids = torch.randint(0, V, (batch, prefix + length))
    opcodes = None
    if force and control.get("opcodes_enabled", True):
        opcodes = torch.randint(-1, N_OPCODES, (batch, prefix + length))
        opcodes[opcodes < 0] = keys.IGNORE_INDEX  # the head's own choice
    with torch.no_grad():
        whole = model(forced_batch(ids, opcodes), model.init_state(batch))
        state = model.init_state(batch)
        if prefix:
            state = model(forced_batch(ids[:, :prefix], None if opcodes is None else opcodes[:, :prefix]), state).state
        outs = [model.step(ids[:, t], state, opcodes=None if opcodes is None else opcodes[:, t])
                for t in range(prefix, prefix + length)]
    logits = torch.stack([out.logits for out in outs], dim=1)
    assert logits.shape == (batch, length, V)
    assert (logits - whole.logits[:, prefix:]).abs().max() <= 1e-5
    assert set(outs[0].aux) == set(whole.aux)
    for name, expected in whole.aux.items():
        got = outs[-1].aux[name] if expected.dim() == 1 else torch.cat([out.aux[name] for out in outs], dim=2)
        expected = expected if expected.dim() == 1 else expected[:, :, prefix:]
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=name)
    assert state.position == prefix + length
    for mine, theirs in zip(state.layers, whole.state.layers, strict=True):
        for name, tensor in mine.tensors().items():
            torch.testing.assert_close(tensor, theirs.tensors()[name], rtol=1e-4, atol=1e-5, msg=name)


def small_model(**block) -> MosaicLM:
    sizes = {"d_model": 16, "mem_buckets": 4, "mem_assoc": 2, "mem_key_dim": 8, "mem_dim": 8, "chunk_size": 4}
    return build(sizes, block, 0, 0.3)


def test_the_step_is_a_recurrence_updating_the_state_in_place(monkeypatch) -> None:
    model = small_model(opcodes_control_enabled=True)
    with torch.no_grad():
        state = model.prefill(torch.randint(0, V, (4, 9))).state
        expected = model.step(torch.arange(4), state.copy(), with_aux=False).logits
        table = state.layers[0].memory.contiguous()
        state.layers[0].memory = table

        def no_chunks(*args, **kwargs):
            raise AssertionError("the recurrent step ran the chunked block")

        monkeypatch.setattr(MosaicBlock, "forward", no_chunks)
        out = model.step(torch.arange(4), state, with_aux=False)
    assert out.state is state and state.position == 10
    assert state.layers[0].memory.data_ptr() == table.data_ptr()  # the table was written in place
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-6)
    assert out.aux == {}


def test_autograd_and_other_memories_take_the_chunked_path(monkeypatch) -> None:
    model = small_model()
    ids = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        state = model.prefill(ids).state
        recurrent = model.step(torch.tensor([1, 2]), state.copy()).logits
    differentiable = model.step(torch.tensor([1, 2]), state.copy())
    assert differentiable.logits.requires_grad
    torch.testing.assert_close(differentiable.logits.detach(), recurrent, rtol=0, atol=1e-5)
    monkeypatch.setattr(recurrent_step, "has_recurrent_step", lambda block: False)
    model._step_cache = None
    with torch.no_grad():
        chunked = model.step(torch.tensor([1, 2]), state.copy()).logits
    torch.testing.assert_close(chunked, recurrent, rtol=0, atol=1e-5)


def test_forward_hooks_see_every_step() -> None:
    model = small_model(opcodes_control_enabled=True)
    calls = []
    with torch.no_grad():
        state = model.prefill(torch.randint(0, V, (1, 5))).state
        expected = model.step(torch.tensor([3]), state.copy()).logits
        handle = model.blocks[-1].opcode_head.proj.register_forward_hook(lambda *args: calls.append(1))
        hooked = model.step(torch.tensor([3]), state.copy()).logits
        handle.remove()
    assert calls == [1]  # the hooked module ran: the chunked path
    torch.testing.assert_close(hooked, expected, rtol=0, atol=1e-5)


def test_the_rearranged_weights_follow_parameter_updates() -> None:
    model = small_model()
    with torch.no_grad():
        state = model.prefill(torch.randint(0, V, (1, 5))).state
        model.step(torch.tensor([3]), state.copy())  # builds the rearranged weights
        for parameter in model.parameters():
            parameter.add_(0.05)  # what an optimizer step does: an in-place update
        stepped = model.step(torch.tensor([3]), state.copy()).logits
    chunked = model.step(torch.tensor([3]), state.copy()).logits  # autograd on: the chunked path
    torch.testing.assert_close(stepped, chunked.detach(), rtol=0, atol=1e-5)


def test_step_checks_its_arguments() -> None:
    model = small_model()
    state = model.init_state(2)
    with pytest.raises(ModelError, match=r"shape \(B,\)"):
        model.step(torch.zeros(2, 1, dtype=torch.int64), state)
    with pytest.raises(ModelError, match="state is for batch 2"):
        model.step(torch.zeros(3, dtype=torch.int64), state)
    with pytest.raises(ModelError, match="opcodes must have the shape"):
        model.step(torch.zeros(2, dtype=torch.int64), state, opcodes=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ModelError, match="opcodes must be"):
        model.step(torch.zeros(2, dtype=torch.int64), state, opcodes=torch.tensor([0, N_OPCODES]))


def test_a_stream_moves_between_inference_mode_and_no_grad() -> None:
    model = small_model(opcodes_control_enabled=True)
    with torch.no_grad():
        state = model.prefill(torch.randint(0, V, (2, 7))).state
        expected = state.copy()
        for t in range(3):
            model.step(torch.tensor([t, t + 1]), expected)
    with torch.inference_mode():
        model.step(torch.tensor([0, 1]), state)
    with torch.no_grad():
        model.step(torch.tensor([1, 2]), state)
    with torch.inference_mode():
        out = model.step(torch.tensor([2, 3]), state)
    for mine, theirs in zip(out.state.layers, expected.layers, strict=True):
        for name, tensor in mine.tensors().items():
            torch.testing.assert_close(tensor, theirs.tensors()[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("opcode", range(N_OPCODES))
@pytest.mark.parametrize("hard_writes", [True, False])
def test_a_step_skips_only_what_its_opcode_leaves_at_zero(opcode, hard_writes) -> None:
    """Under hard control a step skips the memory read, the writes and the SCAN read where no sample's
    opcode opens them (and a memory write where every hard write gate is closed): every sample forced
    to one opcode, the stream still matches the chunked forward, state included."""
    model = small_model(opcodes_control_enabled=True, mem_hard_writes=hard_writes)
    ids = torch.randint(0, V, (3, 8))
    opcodes = torch.full((3, 8), opcode)
    opcodes[:, :3] = torch.randint(0, N_OPCODES, (3, 3))  # a prefix that fills memory and registers
    with torch.no_grad():
        whole = model(forced_batch(ids, opcodes), model.init_state(3))
        state = model.init_state(3)
        logits = torch.stack([model.step(ids[:, t], state, opcodes=opcodes[:, t], with_aux=False).logits
                              for t in range(8)], dim=1)
    torch.testing.assert_close(logits, whole.logits, rtol=1e-4, atol=1e-5)
    for mine, theirs in zip(state.layers, whole.state.layers, strict=True):
        for name, tensor in mine.tensors().items():
            torch.testing.assert_close(tensor, theirs.tensors()[name], rtol=1e-4, atol=1e-5, msg=name)
