"""Curricula: schedules, the dataset protocol, errors naming the dataset."""

from __future__ import annotations

import itertools
import math

import pytest
from mosaic.core.errors import ConfigError, DataError
from mosaic.core.plugins import get_registry
from mosaic.data.config import MemoryCurriculumConfig, MQARConfig
from mosaic.data.curricula import (
    DifficultyRamp,
    DifficultyRampConfig,
    TeacherForcingDecay,
    TeacherForcingDecayConfig,
    schedule_value,
)
from mosaic.data.memory_curriculum import MemoryCurriculumDataset
from mosaic.data.mqar import MQARDataset


def _value(step, total=111, **kwargs):
    options = {"start": 1.0, "end": 0.0, "shape": "linear", "warmup_steps": 10, "cooldown_steps": 0} | kwargs
    return schedule_value(step, total, **options)


def test_schedule_shapes_warmup_and_cooldown():
    assert _value(0) == _value(9) == 1.0
    assert _value(10) == 1.0 and _value(60) == pytest.approx(0.5) and _value(109) == pytest.approx(0.01)
    assert _value(110) == 0.0
    assert _value(60, shape="cosine") == pytest.approx(0.5)
    assert _value(35, shape="cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert _value(50, shape="constant") == 1.0
    assert _value(55, cooldown_steps=10) == pytest.approx(0.5) and _value(99, cooldown_steps=10) == pytest.approx(1 / 90)
    assert _value(100, cooldown_steps=10) == 0.0 and _value(110, cooldown_steps=10) == 0.0
    values = [_value(s, shape="cosine", start=0.2, end=0.9) for s in range(111)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    with pytest.raises(ConfigError, match="warmup_steps"):
        _value(0, total=10, warmup_steps=5, cooldown_steps=5)


def test_teacher_forcing_decay_sets_the_dataset_and_reports_it():
    dataset = MemoryCurriculumDataset(MemoryCurriculumConfig())
    curriculum = TeacherForcingDecay(TeacherForcingDecayConfig(start=1.0, end=0.2, shape="linear"))
    metrics = curriculum.update(50, 101, dataset)
    assert metrics == {"teacher_forcing": pytest.approx(0.6)}
    assert float(dataset[0]["mosaic_teacher_forcing"]) == pytest.approx(0.6)


def test_difficulty_ramp_grows_the_sample():
    config = MemoryCurriculumConfig(block_size=256, n_pairs=8, min_pairs=1, distractor_len=4, min_distractor_len=0)
    dataset = MemoryCurriculumDataset(config)
    ramp = DifficultyRamp(DifficultyRampConfig(start_level=0.0, end_level=1.0))
    lengths = []
    for step in (0, 50, 100):
        assert ramp.update(step, 101, dataset) == {"difficulty": pytest.approx(step / 100)}
        lengths.append(int((dataset[0]["target_ids"] != -100).sum()))
    assert lengths[0] < lengths[1] < lengths[2]
    mqar = MQARDataset(MQARConfig(num_kv_pairs=8, min_kv_pairs=2))
    ramp.update(0, 100, mqar)
    assert int((mqar[0]["target_ids"] != -100).sum()) == 2


def test_a_dataset_without_the_method_is_named_in_the_error():
    class Fixed:
        pass

    with pytest.raises(DataError, match="Fixed.*set_difficulty"):
        DifficultyRamp(DifficultyRampConfig()).update(0, 10, Fixed())
    with pytest.raises(DataError, match="Fixed.*set_teacher_forcing"):
        TeacherForcingDecay(TeacherForcingDecayConfig()).update(0, 10, Fixed())


def test_curricula_build_through_the_registry_with_validation():
    registry = get_registry()
    ramp = registry.build("curriculum.difficulty_ramp", {"start_level": 0.25, "shape": "cosine"})
    assert isinstance(ramp, DifficultyRamp) and ramp.config.start_level == 0.25
    decay = registry.build("curriculum.teacher_forcing_decay", {"end": 0.5, "warmup_steps": 3})
    assert isinstance(decay, TeacherForcingDecay)
    for component, bad in (
        ("curriculum.teacher_forcing_decay", {"start": 1.5}),
        ("curriculum.teacher_forcing_decay", {"shape": "exponential"}),
        ("curriculum.difficulty_ramp", {"warmup_steps": -1}),
        ("curriculum.difficulty_ramp", {"level": 0.5}),
    ):
        with pytest.raises(ConfigError):
            registry.build(component, bad)
