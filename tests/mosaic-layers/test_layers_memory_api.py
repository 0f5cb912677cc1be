"""Reading memory back: MosaicLM.memory_cells / replay_memory / forget_memory_cells."""

import pytest
import torch

from mosaic.core.errors import ModelError
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig
from mosaic.layers.model import MosaicLM

HASHES, BUCKETS, ASSOC = 2, 2, 2


def make_model(seed=0):
    torch.manual_seed(seed)
    block = MosaicBlockConfig(d_model=16, state_k=2, state_dim=4, mem_buckets=BUCKETS, mem_hashes=HASHES,
                              mem_assoc=ASSOC, mem_key_dim=8, mem_dim=8, reg_slots=0, chunk_size=4,
                              opcodes_enabled=False, opcodes_control_enabled=False)
    model = MosaicLM(MosaicLMConfig(vocab_size=30, n_layers=2, block=block))
    with torch.no_grad():
        for p in model.blocks.parameters():
            p.normal_(std=0.4)
    return model.eval()


def forced(ids, write_bucket, write_gate, read_bucket=None):
    """A batch whose memory writes (and reads) go where the test says, for every hash."""
    length = len(ids)
    batch = {
        "input_ids": torch.tensor([ids]),
        "mosaic_teacher_forcing": torch.ones(1),
        "mosaic_teacher_write_bucket": torch.tensor([write_bucket])[..., None].expand(1, length, HASHES),
        "mosaic_teacher_write_gate": torch.tensor([write_gate], dtype=torch.float32),
    }
    if read_bucket is not None:
        batch["mosaic_teacher_read_bucket"] = torch.tensor([read_bucket])[..., None].expand(1, length, HASHES)
    return batch


def write_three(model):
    """Tokens 0, 1, 2 written to buckets 0, 1, 0 (a skipped token between); their keys and values."""
    captured = {"key": [], "value": [], "utility": []}
    memory = model.blocks[0].memory
    hooks = [memory.write_key.register_forward_hook(lambda m, i, o: captured["key"].append(o.detach())),
             memory.write_value.register_forward_hook(lambda m, i, o: captured["value"].append(o.detach())),
             memory.write_utility.register_forward_hook(lambda m, i, o: captured["utility"].append(o.detach()))]
    with torch.no_grad():
        out = model(forced([3, 7, 11, 5], write_bucket=[0, 1, 1, 0], write_gate=[1.0, 1.0, 0.0, 1.0]),
                    model.init_state(1))
    for hook in hooks:
        hook.remove()
    model.said_utility = torch.sigmoid(captured["utility"][0][0, :, 0])  # (T,) what the head said of each token
    return out.state, captured["key"][0][0], captured["value"][0][0]  # (T, dk), (T, dv)


def test_written_keys_and_values_come_back_with_occupancy_age_and_utility():
    model = make_model()
    state, keys, values = write_three(model)
    cells = model.memory_cells(state)
    assert len(cells) == 2 and [c.layer for c in cells] == [0, 1]
    first = cells[0]
    assert first.keys.shape == (1, HASHES, BUCKETS, ASSOC, 8) and first.values.shape[-1] == 8
    # ring slots: bucket 0 got tokens 0 then 3 (slots 0, 1); bucket 1 got token 1 (slot 0); token 2 not written
    for h in range(HASHES):
        for (bucket, slot), token in {(0, 0): 0, (0, 1): 3, (1, 0): 1}.items():
            assert torch.allclose(first.keys[0, h, bucket, slot], keys[token], atol=1e-6)
            assert torch.allclose(first.values[0, h, bucket, slot], values[token], atol=1e-6)
    expected_occupancy = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).expand(HASHES, -1, -1)
    assert torch.equal(first.occupancy[0], expected_occupancy)
    assert first.age[0, 0].tolist() == [[1, 0], [0, 1]]  # 0 = the newest write of its bucket
    said = model.said_utility  # the write_utility head's verdict, kept per cell at write time
    assert torch.allclose(first.utility[0, 0], torch.stack([said[[0, 3]], torch.stack([said[1], torch.zeros(())])]))
    assert torch.equal(first.bucket[0, 0], torch.tensor([[0, 0], [1, 1]]))
    assert torch.equal(first.slot[0, 0], torch.tensor([[0, 1], [0, 1]]))


def read_contribution(model, state, bucket):
    """What block 0's memory read adds (memory.out of the summed-over-hashes read) for one token
    whose read bucket is forced to ``bucket`` and that writes nothing."""
    memory = model.blocks[0].memory
    reads = []
    original = memory.read

    def spy(plan, table, chunk):
        read, new_table = original(plan, table, chunk)
        reads.append(read.detach())
        return read, new_table

    memory.read = spy
    try:
        with torch.no_grad():
            model(forced([9], write_bucket=[0], write_gate=[0.0], read_bucket=[bucket]), state.copy())
    finally:
        del memory.read
    return memory.out(reads[0][0, 0]).detach()  # (D,)


def test_replay_of_a_cell_is_what_reading_its_bucket_contributes():
    model = make_model(1)
    state, _, _ = write_three(model)
    cells = model.memory_cells(state)[0]
    select = torch.zeros_like(cells.occupancy, dtype=torch.bool)
    select[0, :, 1, 0] = True  # bucket 1 holds one written cell per hash
    replayed = model.replay_memory(state, cells, select, as_logits=False)  # (H, D)
    assert replayed.shape == (HASHES, 16) and not replayed.requires_grad
    # a query reading bucket 1 reads that one cell in every hash; the read sums the hashes
    assert torch.allclose(replayed.sum(0), read_contribution(model, state, 1), atol=1e-4)
    # and a different cell's replay does not match that read
    other = torch.zeros_like(select)
    other[0, :, 0, 1] = True
    assert not torch.allclose(model.replay_memory(state, cells, other, as_logits=False).sum(0),
                              read_contribution(model, state, 1), atol=1e-2)
    logits = model.replay_memory(state, cells, select)
    assert logits.shape == (HASHES, 30)
    assert model.replay_memory(state, cells).shape == (HASHES * BUCKETS * ASSOC, 30)


def test_forget_clears_only_the_selected_cells_of_the_given_state():
    model = make_model(2)
    state, _, _ = write_three(model)
    before = {key: value.clone() for key, value in state.state_dict().items()}
    copy = state.copy()
    cells = model.memory_cells(copy)[0]
    weak = torch.zeros_like(cells.occupancy, dtype=torch.bool)
    weak[0, :, 0, 0] = weak[0, :, 1, 1] = True  # the older write of bucket 0 and the empty slot
    assert int((weak & (cells.occupancy > 0)).sum()) == HASHES
    assert model.forget_memory_cells(copy, cells, weak) == int(weak.sum())
    after = model.memory_cells(copy)[0]
    assert bool((after.occupancy[weak] == 0).all()) and bool((after.values[weak] == 0).all())
    original = model.memory_cells(state)[0]
    assert torch.equal(after.values[~weak], original.values[~weak])
    assert all(torch.equal(before[key], value) for key, value in state.state_dict().items())
    assert torch.allclose(read_contribution(model, copy, 1), read_contribution(model, state, 1))
    assert copy.state_dict().keys() == before.keys()


def test_refresh_makes_the_selected_cells_the_newest_and_keeps_reads():
    model = make_model(3)
    state, _, _ = write_three(model)
    before = model.memory_cells(state)[0]
    old_first = (before.values[0, :, 0, 0].clone(), before.utility[0, :, 0, 0].clone())
    assert before.age[0, 0, 0].tolist() == [1, 0]  # bucket 0: slot 0 is the older write
    read_before = read_contribution(model, state, 0)
    select = torch.zeros_like(before.occupancy, dtype=torch.bool)
    select[0, :, 0, 0] = True
    assert model.refresh_memory_cells(state, before, select) == HASHES
    after = model.memory_cells(state)[0]
    newest = after.age[0, 0, 0] == 0  # the slot the ring overwrites last
    assert torch.equal(after.values[0, :, 0][:, newest][:, 0], old_first[0])  # the refreshed cell moved there
    assert torch.equal(after.utility[0, :, 0][:, newest][:, 0], old_first[1])
    assert torch.allclose(read_contribution(model, state, 0), read_before, atol=1e-5)  # reads are unchanged


def test_bad_arguments_are_refused():
    model = make_model()
    state, _, _ = write_three(model)
    cells = model.memory_cells(state)[0]
    with pytest.raises(ModelError, match="select"):
        model.replay_memory(state, cells, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ModelError, match="MosaicState"):
        model.memory_cells(object())
