"""Every v0 opcode acts on the block through its channels; a plugin opcode acts without block code."""

import attrs
import pytest
import torch

from mosaic.core.errors import CheckpointError
from mosaic.core.plugins import PluginHost, PluginSelection, hookimpl
from mosaic.layers.block import MosaicBlock
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig
from mosaic.layers.isa import V0_OPCODE_IDS, V0_OPCODES, ChannelValues, Opcode, opcode_table
from mosaic.layers.model import MosaicLM
from mosaic.layers.vm import TeacherForcing

B, T = 2, 6
CONFIG = MosaicBlockConfig(d_model=12, state_k=2, state_dim=3, mem_buckets=4, mem_hashes=2, mem_assoc=2,
                           mem_key_dim=6, mem_dim=5, reg_slots=2, reg_dim=4, chunk_size=4,
                           opcodes_control_enabled=True)


def make_block(opcodes=V0_OPCODES, keep=(), config=CONFIG):
    """A block with large random weights, except the parameters named in ``keep``, which keep the
    constructor's values (what training starts from)."""
    torch.manual_seed(0)
    block = MosaicBlock(config, opcodes)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name not in keep:
                p.normal_(std=0.5)
    return block


def full_state(block):
    """A state whose memory, summary and registers are all occupied."""
    torch.manual_seed(1)
    state = block.init_state(B)
    state.memory = torch.randn_like(state.memory)
    state.memory[..., -1] = 1.0
    state.memory[:, :, -1] = 0.0  # the scratch row stays empty
    state.summary = torch.randn_like(state.summary)
    state.registers = torch.randn_like(state.registers)
    return state


def run(block, opcode, state=None, **teacher):
    x = torch.randn(B, T, 12, generator=torch.Generator().manual_seed(2))
    forced = TeacherForcing(opcode=torch.full((B, T), V0_OPCODE_IDS.get(opcode, 10)), **teacher)
    with torch.no_grad():
        y, aux, new_state = block(x, forced, state)
    return x, y, aux, new_state


def test_read_mem_gates_memory_reads():
    block = make_block()
    _, y_nop_full, _, _ = run(block, "NOP", full_state(block))
    _, y_nop_empty, _, _ = run(block, "NOP", block.init_state(B))
    _, y_read_full, _, _ = run(block, "READ_MEM", full_state(block))
    _, y_read_empty, _, _ = run(block, "READ_MEM", block.init_state(B))
    # read channel 0: the memory's contents cannot influence the output (registers aside)
    state_without_memory = full_state(block)
    state_without_memory.memory.zero_()
    _, y_nop_registers_only, _, _ = run(block, "NOP", state_without_memory)
    torch.testing.assert_close(y_nop_full, y_nop_registers_only)
    assert not torch.allclose(y_nop_full, y_nop_empty)  # registers do differ between the two states
    assert (y_read_full - y_read_empty).abs().max() > 1e-2


def test_write_mem_gates_writes():
    block = make_block()
    gate = {"write_gate": torch.ones(B, T)}
    state = full_state(block)
    for opcode in ("NOP", "READ_MEM", "IDLE"):
        _, _, _, after = run(block, opcode, state, **gate)
        torch.testing.assert_close(after.memory, state.memory)
        torch.testing.assert_close(after.registers, state.registers)
    _, _, _, after = run(block, "WRITE_MEM", state, **gate)
    assert (after.memory - state.memory).abs().max() > 1e-2
    assert (after.registers - state.registers).abs().max() > 1e-2


def token_query(block, x, state):
    """The memory query a token ``x (B, 1, D)`` reads with (the block's own projections)."""
    with torch.no_grad():
        u = block.norm(x)
        local, _ = block.mixer(u, state.conv_tail)
        return block.memory.query(u + local)[:, 0]  # (B, key_dim)


def test_clear_mem_clears_only_the_routed_slot():
    """CLEAR erases the entry whose key a read would match in the routed bucket, not the bucket's
    next ring position: the ring counters start non-empty, pointing at the other slot."""
    block = make_block()
    state = full_state(block)
    x = torch.randn(B, 1, 12, generator=torch.Generator().manual_seed(3))
    query = token_query(block, x, state)
    dk, bucket = CONFIG.mem_key_dim, 3
    table = state.memory[:, :, :-1].view(B, 2, 4, 2, -1)  # (B, H, buckets, slots, cell)
    table[:, :, bucket, 0, :dk] = 4 * query[:, None]  # slot 0 holds the key the token asks for
    table[:, :, bucket, 1, :dk] = -4 * query[:, None]
    state.mem_counts[:, :, bucket] = 1  # the ring's next slot in bucket 3 is slot 1
    routed = torch.full((B, 1, 2), bucket)
    forced = TeacherForcing(opcode=torch.full((B, 1), V0_OPCODE_IDS["CLEAR_MEM"]), read_bucket=routed,
                            write_bucket=routed)
    before = state.memory[:, :, :-1].view(B, 2, 4, 2, -1).clone()
    with torch.no_grad():
        _, _, after = block(x, forced, state)
    table = after.memory[:, :, :-1].view(B, 2, 4, 2, -1)
    assert table[:, :, bucket, 0].abs().max() < 1e-12  # the matching entry, occupancy included, is gone
    keep = torch.ones(B, 2, 4, 2, dtype=torch.bool)
    keep[:, :, bucket, 0] = False
    torch.testing.assert_close(table[keep], before[keep])  # every other slot, ring slot 1 included


def test_clear_mem_after_one_write_empties_the_bucket():
    """A write, then a CLEAR that reads the same bucket: the written entry is erased."""
    block = make_block()
    state = block.init_state(B)
    state.mem_counts.fill_(1)  # non-empty ring counters: the write lands in slot 1 of its bucket
    x = torch.randn(B, 2, 12, generator=torch.Generator().manual_seed(4))
    routed = torch.full((B, 2, 2), 1)
    opcode = torch.tensor([[V0_OPCODE_IDS["WRITE_MEM"], V0_OPCODE_IDS["CLEAR_MEM"]]] * B)
    forced = TeacherForcing(opcode=opcode, read_bucket=routed, write_bucket=routed,
                            write_gate=torch.tensor([[1.0, 0.0]] * B))
    with torch.no_grad():
        _, _, written = block(x[:, :1], forced.at(0, 1), state)
        _, _, cleared = block(x, forced, state)
    occupancy = lambda s: s.memory[:, :, :-1].view(B, 2, 4, 2, -1)[..., -1]  # noqa: E731
    assert (occupancy(written)[:, :, 1, 1] == 1.0).all()
    assert occupancy(cleared).abs().max() < 1e-12


def test_idle_suppresses_the_update():
    block = make_block()
    x, y, _, _ = run(block, "IDLE", full_state(block))
    torch.testing.assert_close(y, x)


def test_gate_up_and_down_scale_the_fusion_gates():
    block = make_block()
    with torch.no_grad():
        block.bank.out.weight.zero_()  # the state path's own scaling is checked below
    drop = {"drop_local": torch.ones(B, T)}  # leave only the gated paths in the update
    x, y_nop, _, _ = run(block, "NOP", full_state(block), **drop)
    _, y_up, _, _ = run(block, "GATE_UP", full_state(block), **drop)
    _, y_down, _, _ = run(block, "GATE_DOWN", full_state(block), **drop)
    torch.testing.assert_close(y_up - x, 2 * (y_nop - x))
    torch.testing.assert_close(y_down - x, 0.5 * (y_nop - x))


def test_gate_up_and_down_scale_what_enters_the_state_and_it_lasts():
    """The gain is not only the token's own output: it scales the token's drive into the state bank,
    so every later read of the state weighs a GATE_UP token 4x a GATE_DOWN one (``fusion_gates_state``)."""
    block = make_block(config=attrs.evolve(CONFIG, fusion_gates_state=True))
    _, _, _, nop = run(block, "NOP", full_state(block))  # the bank starts at zero: the state is linear in the gain
    _, _, _, up = run(block, "GATE_UP", full_state(block))
    _, _, _, down = run(block, "GATE_DOWN", full_state(block))
    assert nop.bank.abs().max() > 1e-3
    torch.testing.assert_close(up.bank, 2 * nop.bank)
    torch.testing.assert_close(down.bank, 0.5 * nop.bank)
    # one GATE_DOWN token among NOPs: later tokens still read its smaller contribution
    x = torch.randn(B, T, 12, generator=torch.Generator().manual_seed(2))
    opcode = torch.zeros(B, T, dtype=torch.long)
    opcode[:, 1] = V0_OPCODE_IDS["GATE_DOWN"]
    with torch.no_grad():
        y_nop, _, _ = block(x, TeacherForcing(opcode=torch.zeros_like(opcode)))
        y_gated, _, _ = block(x, TeacherForcing(opcode=opcode))
    torch.testing.assert_close(y_gated[:, 0], y_nop[:, 0])
    assert ((y_gated - y_nop)[:, 2:].abs().amax(dim=-1) > 1e-4).all()


def test_scan_mixes_in_the_all_bucket_summary():
    block = make_block()
    _, y_read, _, _ = run(block, "READ_MEM", full_state(block))
    _, y_scan, _, _ = run(block, "SCAN", full_state(block))
    assert (y_scan - y_read).abs().max() > 1e-2
    state = full_state(block)
    state.summary.zero_()
    _, y_read, _, _ = run(block, "READ_MEM", state)
    _, y_scan, _, _ = run(block, "SCAN", state)
    torch.testing.assert_close(y_scan, y_read)


def test_commit_drives_the_commitment_head_and_respond_raises_onset():
    # commit_drive as constructed, not re-randomised: a drive that starts at zero (and, with control
    # off, stays there) would leave COMMIT without effect and fail here
    block = make_block(keep=("commit_drive",))
    _, y_nop, aux_nop, _ = run(block, "NOP")
    _, y_commit, aux_commit, _ = run(block, "COMMIT")
    torch.testing.assert_close(y_commit, y_nop)
    assert (aux_commit["mosaic_commitment_logits"] - aux_nop["mosaic_commitment_logits"]).abs().max() > 1e-2
    torch.testing.assert_close(aux_commit["mosaic_commit_signal"], torch.ones(B, T))
    torch.testing.assert_close(aux_nop["mosaic_commit_signal"], torch.zeros(B, T))
    _, _, aux_respond, _ = run(block, "RESPOND")
    torch.testing.assert_close(aux_respond["mosaic_response_onset"], torch.ones(B, T))
    torch.testing.assert_close(aux_nop["mosaic_response_onset"], torch.zeros(B, T))
    _, _, aux_idle, _ = run(block, "IDLE")
    torch.testing.assert_close(aux_idle["mosaic_idle_signal"], torch.ones(B, T))
    torch.testing.assert_close(aux_nop["mosaic_idle_signal"], torch.zeros(B, T))


def test_commit_drive_is_trained_where_commit_is_chosen():
    torch.manual_seed(0)
    block = MosaicBlock(CONFIG)
    x = torch.randn(B, T, 12)
    target = torch.randint(0, 3, (B, T))
    for opcode, expect_gradient in (("NOP", False), ("COMMIT", True)):
        block.zero_grad()
        forced = TeacherForcing(opcode=torch.full((B, T), V0_OPCODE_IDS[opcode]))
        _, aux, _ = block(x, forced)
        torch.nn.functional.cross_entropy(aux["mosaic_commitment_logits"].flatten(0, 1), target.flatten()).backward()
        grad = block.commit_drive.grad
        assert (grad is not None and grad.abs().sum() > 0) == expect_gradient, opcode


class DampenPlugin:
    """Written the way a third party would: one opcode declared purely by its channel values."""

    @hookimpl
    def register_opcodes(self, register):
        register("opcode.DAMPEN", lambda: Opcode("DAMPEN", "halve the block's update", ChannelValues(output_scale=0.5)),
                 summary="halve the block's update")


def dampen_registry():
    host = PluginHost(PluginSelection())
    record = host.add_plugin(DampenPlugin(), "dampen-example")
    assert record.status == "loaded", record.error
    return host.registry


def test_plugin_opcode_changes_the_block_output_without_block_code():
    table = opcode_table(dampen_registry())
    assert [op.name for op in table] == [op.name for op in V0_OPCODES] + ["DAMPEN"]
    block = make_block(table)
    x, y_nop, _, _ = run(block, "NOP", full_state(block))
    _, y_dampen, _, _ = run(block, "DAMPEN", full_state(block))
    torch.testing.assert_close(y_dampen - x, 0.5 * (y_nop - x))
    assert (y_nop - x).abs().max() > 1e-2


def test_model_forces_plugin_opcode_through_the_batch_and_checks_checkpoints():
    table = opcode_table(dampen_registry())
    config = MosaicLMConfig(vocab_size=20, n_layers=1, block=CONFIG)
    torch.manual_seed(0)
    model = MosaicLM(config, opcodes=table)
    ids = torch.randint(0, 20, (B, T))
    forcing = torch.ones(B)
    outputs = {}
    for name, opcode in (("NOP", 0), ("DAMPEN", 10)):
        batch = {"input_ids": ids, "mosaic_teacher_opcode": torch.full((B, T), opcode), "mosaic_teacher_forcing": forcing}
        outputs[name] = model(batch).logits
    assert (outputs["NOP"] - outputs["DAMPEN"]).abs().max() > 1e-4
    # without forcing the teacher opcode is ignored
    unforced = model({"input_ids": ids, "mosaic_teacher_opcode": torch.full((B, T), 10),
                      "mosaic_teacher_forcing": torch.zeros(B)}).logits
    torch.testing.assert_close(unforced, model({"input_ids": ids}).logits)
    assert model.opcode_names[10] == "DAMPEN"
    with pytest.raises(CheckpointError, match="opcode table mismatch"):
        MosaicLM(config, opcodes=V0_OPCODES).load_state_dict(model.state_dict())


def test_without_fusion_gates_state_the_gain_stays_at_its_token():
    """The default: GATE_UP / GATE_DOWN scale only the token's own output, the state bank sees gain 1."""
    block = make_block()
    assert not block.config.fusion_gates_state
    _, _, _, nop = run(block, "NOP", full_state(block))
    _, _, _, up = run(block, "GATE_UP", full_state(block))
    torch.testing.assert_close(up.bank, nop.bank)


def test_fusion_gates_state_needs_the_vm_in_control():
    from mosaic.core.config import structure_config
    from mosaic.core.errors import ConfigError

    with pytest.raises(ConfigError, match="fusion_gates_state"):
        structure_config({"d_model": 12, "fusion_gates_state": True}, MosaicBlockConfig)


def test_an_opcode_name_is_matched_whole() -> None:
    import pytest

    from mosaic.core.errors import InvalidComponentError
    from mosaic.layers.isa import Opcode

    assert Opcode("MY_OP", "a plugin's opcode").name == "MY_OP"
    for bad in ("MY_OP\n", "my_op", "1OP", ""):  # "MY_OP\n" passed a $-anchored pattern
        with pytest.raises(InvalidComponentError, match="UPPER_SNAKE_CASE"):
            Opcode(bad, "bad")
