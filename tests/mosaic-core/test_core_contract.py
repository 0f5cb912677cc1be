"""mosaic.core.contract: key specs are unique, validated and torch-free; protocols name their members."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mosaic.core.contract import IGNORE_INDEX, KEY_SPECS, V0_OPCODE_NAMES, KeySpec, keys
from mosaic.core.contract.protocols import Register, StreamingModel, missing_members, protocol_members
from mosaic.core.errors import DataError


def test_every_key_name_is_spelled_once() -> None:
    names = [spec.name for spec in (*keys.BATCH_KEYS, *keys.AUX_KEYS)]
    assert len(names) == len(set(names)) == len(KEY_SPECS)


def test_padding_derives_from_the_specs() -> None:
    assert keys.PAD_VALUES[keys.TARGET_IDS.name] == IGNORE_INDEX
    assert keys.PAD_VALUES[keys.TEACHER_OPCODE.name] == IGNORE_INDEX
    assert keys.PAD_VALUES[keys.INPUT_IDS.name] == 0
    assert keys.PAD_VALUES[keys.TEACHER_WRITE_GATE.name] == keys.FLOAT_TEACHER_PAD < 0


def test_specs_are_validated() -> None:
    with pytest.raises(ValueError):
        KeySpec("x", "float16", ("B",), "mosaic-data")
    with pytest.raises(ValueError):
        KeySpec("x", "int64", ("B",), "")
    with pytest.raises(DataError, match="carries no mask"):
        _ = keys.TEACHER_OPCODE.mask
    assert keys.TEACHER_WRITE_GATE.mask.name == "mosaic_teacher_write_gate_mask"


def test_aux_specs_carry_the_layer_axis() -> None:
    assert all(spec.shape[0] == "L" for spec in keys.AUX_KEYS)
    assert all(spec.shape[0] == "B" for spec in keys.BATCH_KEYS)


def test_protocol_members_and_what_is_missing() -> None:
    assert protocol_members(StreamingModel) == ("init_state", "step", "prefill", "forward")
    assert protocol_members(Register) == ("__call__",)

    class Half:
        def init_state(self) -> None: ...
        def forward(self) -> None: ...

    assert missing_members(Half(), StreamingModel) == ["step", "prefill"]


def test_the_contract_imports_no_torch() -> None:
    code = "import sys, mosaic.core.contract, mosaic.core.contract.protocols; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    assert len(V0_OPCODE_NAMES) == 10
