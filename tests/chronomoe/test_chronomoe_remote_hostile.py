"""A hostile expert server or client: every bad reply or request is a clear error of bounded size,
never a RecursionError, an allocation the request did not pay for, or a traceback."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save, save_file

from chronomoe.experts import SwiGLUExperts
from chronomoe.remote_server import MAX_EXPERT_ROWS, ExpertService, main
from chronomoe.remote_wire import RemoteExpertError, decode_description


def test_a_deeply_nested_description_is_refused_not_recursed() -> None:
    with pytest.raises(RemoteExpertError, match="not JSON"):
        decode_description(b"[" * 1024)  # inside the size bound; escaped as a RecursionError before


def test_a_request_naming_many_experts_is_refused_whatever_its_capacity() -> None:
    service = ExpertService(SwiGLUExperts(2, 8, 16))
    rows = MAX_EXPERT_ROWS + 1  # with capacity 0 the R·C bound passed, and R weight copies were gathered
    request = save({"slots": torch.zeros(rows, 0, 8), "experts": torch.zeros(rows, dtype=torch.int64)})
    with pytest.raises(RemoteExpertError, match=f"R <= {MAX_EXPERT_ROWS}"):
        service.run(request)


def test_out_of_range_experts_are_named_in_a_bounded_message() -> None:
    service = ExpertService(SwiGLUExperts(2, 8, 16))
    rows = 1000
    request = save({"slots": torch.zeros(rows, 1, 8), "experts": torch.full((rows,), 7, dtype=torch.int64)})
    with pytest.raises(RemoteExpertError, match=r"\(1000 outside\)") as info:
        service.run(request)
    assert len(str(info.value)) < 300  # the whole list made a status bigger than gRPC carries


@pytest.mark.parametrize("weights", [
    None,  # not safetensors at all
    {"w_gate": torch.zeros(0, 4, 8), "w_up": torch.zeros(0, 4, 8), "w_down": torch.zeros(0, 8, 4)},
    {"w_gate": torch.zeros(1, 4, 8, dtype=torch.int64), "w_up": torch.zeros(1, 4, 8), "w_down": torch.zeros(1, 8, 4)},
    {"w_gate": torch.zeros(1, 4, 8), "w_up": torch.zeros(1, 4, 8), "w_down": torch.zeros(1, 4, 8)},
], ids=["garbage", "no-experts", "int-weights", "mismatched"])
def test_the_server_refuses_bad_weights_with_one_message(tmp_path, capsys, weights) -> None:
    path = tmp_path / "w.safetensors"
    if weights is None:
        path.write_bytes(b"\xff" * 64)
    else:
        save_file(weights, str(path))
    assert main(["--weights", str(path)]) == 1
    assert "error:" in capsys.readouterr().err
