"""The chunked fast block against its step-by-step reference twin."""

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from mosaic.layers.block import MosaicBlock
from mosaic.layers.config import MosaicBlockConfig
from mosaic.layers.isa import V0_OPCODES
from mosaic.layers.reference import reference_block_forward
from mosaic.layers.vm import TeacherForcing


def make_block(seed, **overrides):
    torch.manual_seed(seed)
    fields = {"d_model": 12, "state_k": 2, "state_dim": 3, "mem_buckets": 2, "mem_hashes": 2, "mem_assoc": 2,
              "mem_key_dim": 6, "mem_dim": 5, "reg_slots": 3, "reg_dim": 4, "chunk_size": 4}
    fields.update(overrides)
    block = MosaicBlock(MosaicBlockConfig(**fields))
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(std=0.3)  # large weights: many writes, collisions and non-trivial routing
    return block


def assert_twins_agree(block, x, teacher, state=None):
    with torch.no_grad():
        fast, fast_aux, fast_state = block(x, teacher, state)
        ref, ref_aux, ref_state = reference_block_forward(block, x, teacher, state)
    assert torch.isfinite(fast).all()
    assert (fast - ref).abs().max() <= 1e-4
    assert fast_aux.keys() == ref_aux.keys()
    for name in fast_aux:  # head logits of these deliberately large weights: relative to their scale
        scale = max(1.0, ref_aux[name].abs().max().item())
        assert (fast_aux[name] - ref_aux[name]).abs().max() <= 1e-4 * scale, name
    for name, tensor in fast_state.tensors().items():  # carried state: relative to its scale
        expected = ref_state.tensors()[name].double()
        assert (tensor - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item()), name
    return fast, fast_state


@given(
    seed=st.integers(0, 10_000), batch=st.integers(1, 3), length=st.integers(1, 24), chunk=st.integers(1, 9),
    buckets=st.sampled_from([2, 4]), hashes=st.integers(1, 2), assoc=st.integers(1, 3),
    control=st.sampled_from(["off", "hard", "soft"]), hard_writes=st.booleans(),
    step=st.sampled_from([1.0, 0.6]), forced=st.booleans(), route_by_key=st.booleans(),
    slot_policy=st.sampled_from(["ring", "router"]), gates_state=st.booleans(),
)
def test_fast_block_matches_step_reference(seed, batch, length, chunk, buckets, hashes, assoc, control, hard_writes,
                                           step, forced, route_by_key, slot_policy, gates_state):
    block = make_block(seed, chunk_size=chunk, mem_buckets=buckets, mem_hashes=hashes, mem_assoc=assoc,
                       opcodes_control_enabled=control != "off", opcodes_control_soft=control == "soft",
                       fusion_gates_state=gates_state and control != "off",
                       mem_hard_writes=hard_writes, mem_write_step=step, mem_route_by_key=route_by_key,
                       mem_slot_policy=slot_policy)
    x = torch.randn(batch, length, 12)
    teacher = TeacherForcing()
    if forced:  # teacher opcodes (incl. CLEAR_MEM, SCAN, IDLE) and buckets: more collisions inside a chunk
        teacher = TeacherForcing(
            opcode=torch.randint(-1, 10, (batch, length)),
            read_bucket=torch.randint(-1, buckets, (batch, length, hashes)),
            write_bucket=torch.randint(-1, buckets, (batch, length, hashes)),
            write_gate=torch.randint(-1, 2, (batch, length)).float(),
            reg_sel=torch.randint(-1, 3, (batch, length)),
        )
    _, fast_state = assert_twins_agree(block, x, teacher)
    # continuing from a carried state agrees too
    assert_twins_agree(block, torch.randn(batch, 5, 12), None, fast_state)


def test_read_after_write_inside_one_chunk():
    block = make_block(1, chunk_size=16, mem_buckets=4)
    x = torch.randn(1, 8, 12)
    zeros = torch.zeros(1, 8, 2, dtype=torch.int64)
    gate = torch.zeros(1, 8)
    gate[0, 2] = 1.0  # a single write, at token 2, into bucket 0 of both hashes
    with_write = TeacherForcing(read_bucket=zeros, write_bucket=zeros, write_gate=gate)
    without = TeacherForcing(read_bucket=zeros, write_bucket=zeros, write_gate=torch.zeros(1, 8))
    y_write, _ = assert_twins_agree(block, x, with_write)
    y_none, _ = assert_twins_agree(block, x, without)
    # tokens up to and including the writer read memory as it was before the write
    torch.testing.assert_close(y_write[:, :3], y_none[:, :3])
    # every later token of the same chunk sees it
    assert ((y_write[:, 3:] - y_none[:, 3:]).abs().amax(dim=-1) > 1e-3).all()


@given(seed=st.integers(0, 10_000), length=st.integers(1, 16), chunk=st.integers(1, 6),
       slot_policy=st.sampled_from(["ring", "router"]))
# a row that does not clear where the other row does: its clear channel's gradient needs the slot its
# (zero) clear would have picked, as the reference's does
@example(seed=758, length=11, chunk=1, slot_policy="router")
def test_fast_block_gradients_match_step_reference(seed, length, chunk, slot_policy):
    # float64, so that the comparison sees the algorithm rather than fp32 summation order
    block = make_block(seed, chunk_size=chunk, mem_slot_policy=slot_policy, opcodes_control_enabled=True).double()
    x = torch.randn(2, length, 12, dtype=torch.float64)
    weights = torch.randn(2, length, 12, dtype=torch.float64)
    teacher = TeacherForcing(opcode=torch.randint(-1, 10, (2, length)))
    grads = []
    for forward in (block, lambda *args: reference_block_forward(block, *args)):
        block.zero_grad()
        (forward(x, teacher)[0] * weights).sum().backward()
        # a parameter the graph does not reach has no gradient: count it as zero
        grads.append({name: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                      for name, p in block.named_parameters()})
    for name, grad in grads[0].items():
        assert (grad - grads[1][name]).abs().max() <= 1e-8 * max(1.0, grads[1][name].abs().max().item()), name


@given(seed=st.integers(0, 10_000), length=st.integers(1, 20), forced=st.booleans(),
       sizes=st.sampled_from([
           # (buckets, assoc, chunk): cells <= chunk * assoc, so the read scores whole chunk-start tables
           (2, 3, 2), (4, 2, 8), (2, 8, 2),
           # cells > chunk * assoc, so the read gathers each token's bucket
           (4, 3, 2), (4, 2, 1), (2, 2, 1),
       ]))
def test_both_chunk_start_reads_match_step_reference(seed, length, forced, sizes):
    buckets, assoc, chunk = sizes
    block = make_block(seed, chunk_size=chunk, mem_buckets=buckets, mem_assoc=assoc, mem_hashes=2)
    x = torch.randn(2, length, 12)
    teacher = TeacherForcing()
    if forced:  # many writes and reads in the same buckets
        teacher = TeacherForcing(read_bucket=torch.randint(0, buckets, (2, length, 2)),
                                 write_bucket=torch.randint(0, buckets, (2, length, 2)),
                                 write_gate=torch.ones(2, length))
    _, state = assert_twins_agree(block, x, teacher)
    assert_twins_agree(block, torch.randn(2, 7, 12), teacher=None, state=state)


def test_the_summary_advances_only_when_opcodes_can_read_it():
    x = torch.randn(2, 9, 12)
    free = make_block(3, opcodes_control_enabled=False)
    assert not free.reads_summary
    assert free(x)[2].summary.abs().max() == 0  # SCAN is shut: nothing is spent on a summary nobody reads
    controlled = make_block(3, opcodes_control_enabled=True)
    assert controlled.reads_summary
    write = [op.name for op in V0_OPCODES].index("WRITE_MEM")
    writing = TeacherForcing(opcode=torch.full((2, 9), write), write_gate=torch.ones(2, 9))
    assert controlled(x, writing)[2].summary.abs().max() > 0


@pytest.mark.parametrize(("seed", "clear_share"), [(0, 0.5), (0, 0.7), (1, 0.5), (2, 0.7)])
def test_clear_passes_that_restart_mid_sequence_match_step_reference(monkeypatch, seed, clear_share):
    """Long chains of clears in two buckets: the passes that find the cleared slots restart at the
    chunk of their first change (the picks before it are final), from the table they had there; the
    result is still the twin's."""
    block = make_block(seed, chunk_size=4, mem_buckets=2, mem_assoc=3, mem_hashes=2, opcodes_control_enabled=True)
    names = [op.name for op in V0_OPCODES]
    generator = torch.Generator().manual_seed(seed)
    length = 96
    opcode = torch.where(torch.rand(2, length, generator=generator) < clear_share, names.index("CLEAR_MEM"),
                         names.index("WRITE_MEM"))
    teacher = TeacherForcing(opcode=opcode, write_gate=torch.ones(2, length),
                             read_bucket=torch.randint(0, 2, (2, length, 2), generator=generator),
                             write_bucket=torch.randint(0, 2, (2, length, 2), generator=generator))
    read_chunks, pass_lengths = type(block.memory).read_chunks, []

    def recording(self, plan, *args, **kwargs):
        if kwargs.get("picks_only"):
            pass_lengths.append(plan.read_bucket.shape[1])
        return read_chunks(self, plan, *args, **kwargs)

    monkeypatch.setattr(type(block.memory), "read_chunks", recording)
    assert_twins_agree(block, torch.randn(2, length, 12, generator=generator), teacher)
    assert pass_lengths[0] == length and min(pass_lengths) < length  # some pass started past the first chunk
