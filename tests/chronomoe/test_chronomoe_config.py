import subprocess
import sys

import pytest

from chronomoe.config import ChronoConfig, ChronoRouterConfig, MoEConfig
from mosaic.core.config import structure_config
from mosaic.core.errors import ConfigError
from mosaic.core.plugins import get_registry


def test_plugin_registers_routers_and_layer_without_importing_torch():
    code = (
        "import sys\n"
        "from mosaic.core.plugins import get_registry\n"
        "r = get_registry()\n"
        "print(r.ids('router'), r.ids('layer'))\n"
        "assert 'torch' not in sys.modules, 'listing plugins imported torch'\n"
        "r.get('router.chrono').load_config_class()\n"
        "assert 'torch' not in sys.modules, 'config classes imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "'router.chrono', 'router.loss_free', 'router.topk'" in result.stdout
    assert "layer.moe" in result.stdout


def test_chrono_config_validation_reports_paths():
    with pytest.raises(ConfigError) as info:
        structure_config(
            {"clocks": {"alpha_fast": 0.99, "alpha_mid": 0.9}, "k_max": -1.0}, ChronoConfig, path="$.chrono"
        )
    text = str(info.value)
    assert "alpha_fast < alpha_mid < alpha_slow" in text or "k_max" in text
    with pytest.raises(ValueError, match="veto_full"):
        ChronoConfig(veto_full=0.4, veto_zero=0.3)
    with pytest.raises(ValueError, match="top_k"):
        ChronoRouterConfig(d_model=4, n_experts=2, top_k=3)
    with pytest.raises(ValueError, match="dispatch"):
        MoEConfig(d_model=4, dispatch="loop")


def test_every_chrono_config_field_is_read_by_the_package():
    import pathlib

    import chronomoe

    source = "".join(
        p.read_text() for p in pathlib.Path(chronomoe.__file__).parent.glob("*.py") if p.name != "config.py"
    )
    import attrs

    for field in attrs.fields(ChronoConfig):
        assert f".{field.name}" in source, f"ChronoConfig.{field.name} is never used"


def test_registry_lists_the_config_classes():
    registry = get_registry()
    assert registry.get("layer.moe").load_config_class() is MoEConfig
    assert registry.get("router.chrono").summary
