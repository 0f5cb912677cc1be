"""mosaic_commitment trains the way it is evaluated: on the model's own opcodes.

Teacher forcing executes the teacher's opcodes, and COMMIT drives the commitment head's input, so a
model trained with forced COMMIT over exactly the open and close messages reads the class from the
forcing: held out, with its own VM deciding, it misjudged the commitments it judged perfectly with
the teacher's opcodes forced (docs/organism.md, rows "teacher forcing 1 throughout"). The preset must
therefore decay the forcing to 0, early enough that a run its time limit stops early still ends on
its own opcodes, and evaluate at forcing 0."""

from __future__ import annotations

from mosaic.core.plugins import get_registry
from mosaic.data.curricula import TeacherForcingDecay
from mosaic.runtime.training.manifest import load_manifest

#: the share of the preset's steps after which a run must train on the model's own opcodes (a run
#: stopped by its time limit on a loaded 2-core CPU reached 184 of 400 steps)
OWN_OPCODES_FROM = 0.4


def test_mosaic_commitment_ends_training_on_its_own_opcodes() -> None:
    registry = get_registry()
    experiment = load_manifest("mosaic_commitment", registry).experiment()
    decays = [
        spec.build(registry) for spec in experiment.curricula if spec.id == "curriculum.teacher_forcing_decay"
    ]
    assert len(decays) == 1, "mosaic_commitment must decay teacher forcing (curriculum.teacher_forcing_decay)"
    decay, total = decays[0], experiment.trainer.steps
    assert isinstance(decay, TeacherForcingDecay)
    assert all(decay.value(step, total) == 0.0 for step in range(int(OWN_OPCODES_FROM * total), total))
    assert experiment.eval_dataset is not None
    assert experiment.eval_dataset.config.teacher_forcing == 0.0
