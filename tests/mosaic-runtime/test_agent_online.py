"""The online learner: adapters change during inference, base weights never do; saved apart."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from mosaic.core.contract import keys
from mosaic.core.contract.opcodes import V0_OPCODE_IDS
from mosaic.core.errors import CheckpointError, ConfigError
from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.config import ConsolidationConfig, OnlineConfig
from mosaic.runtime.agent.consolidation import consolidate_session
from mosaic.runtime.agent.online import LoRALinear, OnlineLearner, anchor_loss, sequence_loss, tail_loss
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.agent.service import open_agent
from mosaic.runtime.testing.tiny_agent import REPLY, TinyStreamConfig, TinyStreamLM, make_run


def model() -> TinyStreamLM:
    torch.manual_seed(0)
    return TinyStreamLM(TinyStreamConfig(script=REPLY.to_json(), commit_bias=0)).eval()


def note(i: int) -> EventEnvelope:
    return EventEnvelope("Note", {"n": i}, "user", id=f"n{i}", ts=float(i))


def base_weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in net.named_parameters() if "lora_" not in name}


def test_adapter_weights_change_during_inference_while_base_weights_do_not() -> None:
    net = model()
    learner = OnlineLearner(net, OnlineConfig(targets=("head", "mix"), update_every=64, batch=2, lr=1e-2))
    base = base_weights(net)
    adapters = {name: p.detach().clone() for name, p in net.named_parameters() if "lora_" in name}
    assert sorted(learner.adapters) == ["head", "mix"] and len(adapters) == 4
    session = EventSession(net, on_tokens=learner.observe)
    for i in range(3):
        session.handle(note(i))
    assert learner.updates >= 2  # every 64 tokens of input and output
    changed = [name for name, p in net.named_parameters() if "lora_" in name and not torch.equal(p, adapters[name])]
    assert changed  # B moves off zero first, then A follows
    after = base_weights(net)
    assert after.keys() == base.keys() and all(torch.equal(base[k], after[k]) for k in base)
    assert all(not p.requires_grad for name, p in net.named_parameters() if "lora_" not in name)
    assert all(p.grad is None for p in net.parameters())


def test_a_fresh_adapter_leaves_the_layer_unchanged() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 5)
    adapter = LoRALinear(linear, rank=2, alpha=4.0, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 8)
    assert torch.equal(adapter(x), linear(x))
    with torch.no_grad():
        adapter.lora_b.fill_(0.1)
    expected = linear(x) + 2.0 * (x @ adapter.lora_a.T) @ adapter.lora_b.T
    torch.testing.assert_close(adapter(x), expected)


def test_the_replay_buffer_is_bounded_and_updates_follow_the_token_count() -> None:
    learner = OnlineLearner(model(), OnlineConfig(update_every=10, buffer_size=3, batch=2))
    for i in range(5):
        learner.observe(torch.arange(4) + i)  # 4 tokens each: updates after 12 and 24 tokens
    assert len(learner.buffer) == 3 and learner.updates == 1
    learner.observe(torch.arange(8))
    assert learner.updates == 2 and learner.last_loss is not None


def test_targets_that_match_nothing_are_named() -> None:
    with pytest.raises(ConfigError, match="match no Linear layer"):
        OnlineLearner(model(), OnlineConfig(targets=("nothing.*",)))


def test_adapters_are_saved_and_loaded_apart_from_the_base_checkpoint(tmp_path: Path) -> None:
    run_dir, registry = make_run(tmp_path, script=REPLY.to_json(), commit_bias=0)
    checkpoint = sorted((run_dir / "checkpoints").iterdir())[-1]
    checkpoint_bytes = checkpoint.read_bytes()
    online = OnlineConfig(update_every=32, batch=1)
    agent = open_agent(run_dir, registry=registry, session_name="learn", fresh=True, online=online)
    for i in range(2):
        agent.session.handle(note(i))
    assert agent.online.updates > 0
    agent.save()
    agent.close()
    assert checkpoint.read_bytes() == checkpoint_bytes  # the base checkpoint is never rewritten
    saved = {name: (a.lora_a.detach().clone(), a.lora_b.detach().clone()) for name, a in agent.online.adapters.items()}

    restored = open_agent(run_dir, registry=registry, session_name="learn", online=online)
    assert restored.online.updates == agent.online.updates
    for name, adapter in restored.online.adapters.items():
        assert torch.equal(adapter.lora_a, saved[name][0]) and torch.equal(adapter.lora_b, saved[name][1])
    restored.close()
    with pytest.raises(CheckpointError, match="different rank"):
        open_agent(run_dir, registry=registry, session_name="learn", online=OnlineConfig(rank=2))


def unscripted() -> TinyStreamLM:
    torch.manual_seed(0)
    return TinyStreamLM(TinyStreamConfig()).eval()


def test_the_guard_rolls_back_an_update_that_raises_held_out_loss() -> None:
    net = unscripted()
    # a huge learning rate on the head: one step on the buffer ruins the held-out notes
    learner = OnlineLearner(net, OnlineConfig(targets=("head",), update_every=10_000, batch=2, lr=5.0,
                                              max_heldout_rise=0.05))
    heldout = [torch.tensor(list(note(100 + i).to_bytes()) + [10]) for i in range(3)]
    baseline = learner.guard_with(heldout)
    for i in range(4):
        learner.observe(torch.tensor(list(EventEnvelope("Weather", {"t": i}, "s", id=f"w{i}", ts=1.0).to_bytes())))
    adapters = [p.detach().clone() for p in learner.adapter_parameters]
    learner.update()
    assert learner.rollbacks == 1 and learner.updates == 0
    assert all(torch.equal(p, saved) for p, saved in zip(learner.adapter_parameters, adapters, strict=True))
    with torch.no_grad():
        assert abs(float(torch.stack([sequence_loss(net, ids) for ids in heldout]).mean()) - baseline) < 1e-6
    # the same step with a loose guard is kept, and it did raise the held-out loss
    loose = OnlineLearner(unscripted(), OnlineConfig(targets=("head",), update_every=10_000, batch=2, lr=5.0,
                                                max_heldout_rise=100.0))
    loose_baseline = loose.guard_with(heldout)
    loose.buffer.extend(learner.buffer)
    loose.scored.extend(learner.scored)
    loose.update()
    assert loose.rollbacks == 0 and loose.updates == 1
    assert loose.last_heldout is not None and loose.last_heldout > loose_baseline * 1.05
    assert learner.metrics()["online_rollbacks"] == 1.0


def test_the_guard_scores_its_sequences_whole_and_refuses_overlong_ones() -> None:
    net = unscripted()
    # buffer sequences are cut to 16 bytes; guard sequences must not be: cut, a trace loses the facts
    # its questions ask about and the guard cannot see an update that breaks recall
    learner = OnlineLearner(net, OnlineConfig(targets=("head",), max_sequence_bytes=16, max_guard_bytes=200))
    heldout = [torch.tensor(list(note(100 + i).to_bytes()) + [10]) for i in range(3)]
    assert all(ids.shape[0] > 16 for ids in heldout)
    with torch.no_grad():
        whole = float(torch.stack([sequence_loss(net, ids) for ids in heldout]).mean())
    assert abs(learner.guard_with(heldout) - whole) < 1e-6
    with pytest.raises(ConfigError, match=r"online.heldout\[1\].*max_guard_bytes \(200\)"):
        learner.guard_with([heldout[0], torch.zeros(201, dtype=torch.long)])


def test_with_context_bytes_the_buffer_holds_the_stream_up_to_each_event() -> None:
    events = [torch.tensor(list(note(i).to_bytes())) for i in range(3)]
    alone = OnlineLearner(unscripted(), OnlineConfig(targets=("head",), update_every=10_000))
    framed = OnlineLearner(unscripted(), OnlineConfig(targets=("head",), update_every=10_000, context_bytes=200,
                                                      max_sequence_bytes=256))
    for ids in events:
        alone.observe(ids)
        framed.observe(ids)
    assert [b.tolist() for b in alone.buffer] == [ids.tolist() for ids in events]
    stream = torch.cat(events)
    ends = torch.cumsum(torch.tensor([ids.shape[0] for ids in events]), 0).tolist()
    assert [b.tolist() for b in framed.buffer] == [stream[max(0, end - 200) : end].tolist() for end in ends]
    assert framed.tokens_since_update == alone.tokens_since_update == stream.shape[0]
    # the loss of a framed sequence is its event's tokens given the context before them
    assert list(framed.scored) == [ids.shape[0] for ids in events]
    window, scored = framed.buffer[-1], framed.scored[-1]
    assert 1 < scored < window.shape[0] - 1  # the window holds context before the event
    with torch.no_grad():
        logits = framed.model({keys.INPUT_IDS.name: window[None, :-1]}).logits[0]
        expected = torch.nn.functional.cross_entropy(logits[-scored:], window[-scored:])
        assert torch.allclose(tail_loss(framed.model, window, scored), expected)
        assert torch.allclose(tail_loss(framed.model, window, 10**6), sequence_loss(framed.model, window))


def test_consolidation_can_take_an_idle_labelled_online_step() -> None:
    net = unscripted()
    learner = OnlineLearner(net, OnlineConfig(targets=("head", "opcode"), update_every=10_000, lr=1e-2))
    session = EventSession(net)
    session.observe(note(1))
    idle = V0_OPCODE_IDS["IDLE"]
    replay = torch.tensor(list(b'{"n":1}'))

    def idle_probability() -> float:
        with torch.no_grad():
            out = net({keys.INPUT_IDS.name: replay[None]})
        return float(torch.softmax(out.aux[keys.OPCODE_LOGITS.name].float(), -1)[..., idle].mean())

    before = idle_probability()
    report = consolidate_session(session, ConsolidationConfig(prune_below=0.0, replay_samples=4, online_step=True),
                                 random.Random(0), learner)
    assert report.online_loss is not None and learner.updates == 1
    for _ in range(5):
        learner.idle_step(replay)
    assert idle_probability() > before  # the replayed positions are labelled IDLE: silence is learned


def weather(i: int) -> EventEnvelope:
    return EventEnvelope("Weather", {"sky": ["rain", "fog"][i % 2], "t": i}, "s", id=f"w{i}", ts=1.0)


def test_rehearsal_pulls_updates_back_on_the_training_distribution() -> None:
    """The same steps on new Weather events, with and without rehearsal of old Note sequences: with
    it the model's predictions on held-out Notes move far less from the base's, and Weather is still
    learned."""
    old = [torch.tensor(list(note(200 + i).to_bytes()) + [10]) for i in range(2)]
    heldout = [torch.tensor(list(note(300 + i).to_bytes()) + [10]) for i in range(3)]
    new = [torch.tensor(list(weather(i).to_bytes()) + [10]) for i in range(8)]

    def run(anchor_weight: float) -> tuple[float, float, float]:
        net = unscripted()
        learner = OnlineLearner(net, OnlineConfig(targets=("head", "mix"), update_every=10_000, batch=2, lr=5e-2,
                                                  anchor_weight=anchor_weight, rehearse=1))
        learner.rehearse_with(old)
        with torch.no_grad(), learner.adapters_off():
            base = [torch.log_softmax(net({keys.INPUT_IDS.name: ids[None, :-1]}).logits[0], -1) for ids in heldout]
            before = float(torch.stack([sequence_loss(net, ids) for ids in new]).mean())
        for ids in new:
            learner.observe(ids)
        for _ in range(8):
            learner.update()
        with torch.no_grad():
            after = float(torch.stack([sequence_loss(net, ids) for ids in new]).mean())
            moved = float(torch.stack([anchor_loss(net, ids, b) for ids, b in zip(heldout, base, strict=True)]).mean())
        return before, after, moved

    assert OnlineConfig().anchor_weight > 0  # on by default, for the runtime and bench_idle
    free, anchored = run(0.0), run(1.0)
    assert free[0] == anchored[0]  # the same base
    assert anchored[2] < 0.5 * free[2], (free, anchored)  # held-out predictions stay near the base's
    assert anchored[1] < 0.7 * anchored[0], anchored  # the new pattern is still learned


def test_rehearsal_targets_are_the_base_model_s_even_with_trained_adapters() -> None:
    net = unscripted()
    learner = OnlineLearner(net, OnlineConfig(targets=("head",), update_every=10_000))
    ids = torch.tensor(list(note(1).to_bytes()) + [10])
    learner.rehearse_with([ids])
    base = learner.rehearsal[0][1].clone()
    with torch.no_grad():
        learner.adapters["head"].lora_b.fill_(0.5)
    learner.rehearse_with([ids])
    assert torch.equal(learner.rehearsal[0][1], base)
    assert learner.adapters["head"].scale == 2.0  # switched back on after
    with pytest.raises(ConfigError, match=r"online.rehearsal\[0\].*max_guard_bytes"):
        learner.rehearse_with([torch.zeros(learner.config.max_guard_bytes + 1, dtype=torch.long)])


def test_rehearsal_items_keep_their_labelled_prefix_and_drop_the_padding() -> None:
    from mosaic.runtime.agent.rehearsal import labelled_prefix

    ids = torch.tensor([5, 6, 7, 8, 0, 0])
    targets = torch.tensor([6, 7, 8, keys.IGNORE_INDEX, keys.IGNORE_INDEX, keys.IGNORE_INDEX])
    assert labelled_prefix({keys.INPUT_IDS.name: ids, keys.TARGET_IDS.name: targets}).tolist() == [5, 6, 7, 8]
    unlabelled = torch.full_like(targets, keys.IGNORE_INDEX)
    assert labelled_prefix({keys.INPUT_IDS.name: ids, keys.TARGET_IDS.name: unlabelled}).numel() == 0
    assert labelled_prefix({keys.INPUT_IDS.name: ids}).tolist() == ids.tolist()
