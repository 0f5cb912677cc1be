"""Straight-through routing, teacher forcing and numerical stability of the whole block."""

import attrs
import pytest
import torch

from mosaic.core.contract import IGNORE_INDEX, keys
from mosaic.layers.block import MosaicBlock
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig
from mosaic.layers.model import MosaicLM

CONFIG = MosaicBlockConfig(d_model=16, state_k=2, state_dim=4, mem_buckets=4, mem_assoc=2, mem_key_dim=8,
                           mem_dim=8, reg_slots=2, reg_dim=4, chunk_size=8)


@pytest.mark.parametrize("route_by_key", [True, False])
@pytest.mark.parametrize("slot_policy", ["ring", "router"])
def test_lm_loss_alone_trains_values_keys_and_routers_through_straight_through_routing(route_by_key, slot_policy):
    torch.manual_seed(0)
    block = attrs.evolve(CONFIG, mem_route_by_key=route_by_key, mem_slot_policy=slot_policy)
    model = MosaicLM(MosaicLMConfig(vocab_size=30, n_layers=1, block=block))
    ids = torch.randint(0, 30, (2, 24))
    out = model({"input_ids": ids, "target_ids": ids})
    torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), ids.flatten()).backward()
    memory = model.blocks[0].memory
    # the routing is hard in the forward pass, yet the routers receive the LM loss's gradient
    assert out.aux["mosaic_read_bit_logits"].requires_grad
    names = ["write_value", "write_key", "read_router", "write_router", "query", "write_gate"]
    for name in names + (["slot_router"] if slot_policy == "router" else []):
        grad = getattr(memory, name).weight.grad
        assert grad is not None and grad.abs().max() > 0, name


def test_teacher_forcing_probability_selects_tokens_per_sample():
    torch.manual_seed(0)
    model = MosaicLM(MosaicLMConfig(vocab_size=30, n_layers=1, block=CONFIG))
    batch = {
        "input_ids": torch.randint(0, 30, (2, 400)),
        "mosaic_teacher_forcing": torch.tensor([1.0, 0.3]),
        "mosaic_teacher_write_bucket": torch.full((2, 400, 2), 3),
        "mosaic_teacher_opcode": torch.full((2, 400), IGNORE_INDEX),  # ignored everywhere: never forced
    }
    teacher = model.teacher(batch)
    forced = teacher.write_bucket[..., 0] >= 0
    assert forced[0].all()
    assert 0.2 < forced[1].float().mean() < 0.4
    assert (teacher.opcode == IGNORE_INDEX).all()
    # absent teacher keys are not an error; absent forcing means no forcing at all
    assert model.teacher({"input_ids": batch["input_ids"], "mosaic_teacher_write_bucket": batch[
        "mosaic_teacher_write_bucket"]}).write_bucket is None


def test_forced_write_bucket_is_where_memory_is_written():
    torch.manual_seed(0)
    model = MosaicLM(MosaicLMConfig(vocab_size=30, n_layers=1, block=CONFIG))
    ids = torch.randint(0, 30, (1, 10))
    batch = {"input_ids": ids, "mosaic_teacher_forcing": torch.ones(1),
             "mosaic_teacher_write_bucket": torch.full((1, 10, 2), 2),
             "mosaic_teacher_write_gate": torch.ones(1, 10)}
    with torch.no_grad():
        state = model(batch, model.init_state(1)).state
    table = model.blocks[0].memory.table_view(state.layers[0].memory)  # (B, H, buckets, slots, dim)
    occupied = table[..., -1] > 0  # (B, H, buckets, slots)
    assert occupied[:, :, 2].any(dim=-1).all()
    assert not occupied[:, :, [0, 1, 3]].any()


def test_block_stays_finite_at_extreme_decays():
    torch.manual_seed(0)
    block = MosaicBlock(CONFIG)
    with torch.no_grad():
        block.bank.decay_logit[0] = torch.logit(torch.tensor(0.001))
        block.bank.decay_logit[1] = torch.logit(torch.tensor(0.999))
    x = torch.randn(2, 1500, 16, requires_grad=True)
    y, aux, _ = block(x)
    (y.square().mean() + aux["mosaic_state_decay_reg_loss"]).backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert torch.isfinite(block.bank.decay_logit.grad).all()
    assert aux["mosaic_state_decay_reg_loss"] < 1e-10  # inside the default band [0.001, 0.999]
    with torch.no_grad():
        block.bank.decay_logit[0] = torch.logit(torch.tensor(0.9999))
    assert block(x[:, :4])[1]["mosaic_state_decay_reg_loss"] > 0  # outside: regularised


@pytest.mark.parametrize(("advance_at", "bias", "moves"), [(0.0, -6.0, True), (0.5, -6.0, False), (0.5, 6.0, True)])
def test_soft_writes_move_the_ring_only_above_mem_ring_advance_at(advance_at, bias, moves):
    torch.manual_seed(0)
    block = attrs.evolve(CONFIG, mem_hard_writes=False, mem_hashes=1, mem_assoc=64, mem_ring_advance_at=advance_at)
    model = MosaicLM(MosaicLMConfig(vocab_size=32, n_layers=1, block=block)).eval()
    with torch.no_grad():  # every write gate near 0 (bias -6) or near 1 (bias 6)
        model.blocks[0].memory.write_gate.weight.zero_()
        model.blocks[0].memory.write_gate.bias.fill_(bias)
        state = model({keys.INPUT_IDS.name: torch.randint(0, 32, (2, 12))}, model.init_state(2)).state
    assert state is not None and state.layers[0].mem_counts is not None
    assert state.layers[0].mem_counts.sum(-1).tolist() == ([[12], [12]] if moves else [[0], [0]])


def test_a_teacher_chosen_bucket_sends_no_straight_through_gradient_to_its_router():
    """Where the teacher forces the route, the router learns from the bit loss only: the LM loss's
    verdict on the teacher's bucket is not the router's to take (it pushed the routers off the
    teacher's buckets without bound at MQAR (512, 64)). Unforced tokens keep the gradient."""
    torch.manual_seed(0)
    model = MosaicLM(MosaicLMConfig(vocab_size=30, n_layers=1, block=CONFIG))
    ids = torch.randint(0, 30, (2, 24))
    grads = {}
    for forcing in (1.0, 0.0):
        model.zero_grad()
        batch = {"input_ids": ids, "target_ids": ids, "mosaic_teacher_forcing": torch.full((2,), forcing),
                 "mosaic_teacher_read_bucket": torch.randint(0, 4, (2, 24, 2)),
                 "mosaic_teacher_write_bucket": torch.randint(0, 4, (2, 24, 2))}
        out = model(batch)
        torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), ids.flatten()).backward()
        memory = model.blocks[0].memory
        grads[forcing] = {name: getattr(memory, name).weight.grad for name in ("read_router", "write_router")}
    for name in ("read_router", "write_router"):
        assert grads[1.0][name] is None or grads[1.0][name].abs().max() == 0, name
        assert grads[0.0][name] is not None and grads[0.0][name].abs().max() > 0, name
