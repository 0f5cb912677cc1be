"""``mosaic.runtime.load_run``: a trained run in Python (model, resolved config, saved streaming
state), and checkpoints that describe their model as plain data."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from mosaic.core.errors import CheckpointError, ConfigError, MosaicError
from mosaic.runtime import LoadedRun, load_run
from mosaic.runtime.agent.service import open_agent
from mosaic.runtime.testing.tiny_agent import REPLY, TinyStreamConfig, TinyStreamLM, make_run
from mosaic.runtime.training.checkpoint import latest_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return make_run(tmp_path_factory.mktemp("load_run"))


def test_load_run_returns_the_model_its_config_and_no_state_without_a_session(trained) -> None:
    run, registry = trained
    loaded = load_run(run, registry=registry)
    assert isinstance(loaded, LoadedRun)
    assert isinstance(loaded.model, TinyStreamLM) and not loaded.model.training
    assert loaded.config == TinyStreamConfig() and loaded.model.config == loaded.config
    assert loaded.state is None and loaded.step == 2 and loaded.experiment == "agent"
    saved = torch.load(latest_checkpoint(run / "checkpoints"), weights_only=True)["model"]
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)


def test_load_run_returns_the_state_a_session_saved(trained) -> None:
    run, registry = trained
    agent = open_agent(run, registry=registry, session_name="kept", fresh=True, output=io.StringIO())
    agent.session.observe(REPLY)  # the state moves away from the initial one
    agent.save()
    agent.close()
    expected = agent.session.state.state_dict()
    assert int(expected["position"]) > 0
    loaded = load_run(run, session="kept", registry=registry)
    assert loaded.state is not None
    for name, tensor in loaded.state.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)
    assert load_run(run, session=None, registry=registry).state is None


def test_checkpoints_record_the_model_config_as_plain_data(trained) -> None:
    run, _ = trained
    payload = torch.load(latest_checkpoint(run / "checkpoints"), weights_only=True)
    config = payload["model_config"]
    assert config["type"] == "model.agent_tiny_stream" and config["d_model"] == 16 and config["cells"] == 8
    allowed = (dict, list, tuple, str, int, float, bool, type(None))

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(key, str) and plain(item) for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(item) for item in value)
        return isinstance(value, allowed)

    assert plain(config)


def test_load_run_errors_are_typed(trained, tmp_path: Path) -> None:
    run, registry = trained
    with pytest.raises(MosaicError, match="'nope'"):  # the run trained experiment 'agent' only
        load_run(run, "nope", registry=registry)
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run(tmp_path, registry=registry)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text((run / "config.yaml").read_text())
    (broken / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_run(broken, registry=registry)
