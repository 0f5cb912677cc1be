import subprocess
import sys

import pytest

from chronomoe.config import (
    ChronoConfig,
    ChronoRouterConfig,
    ClockConfig,
    KernelConfig,
    LifecycleConfig,
    MoEConfig,
)
from mosaic.core.config import structure_config, unstructure_config
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
    # other installed plugins may add routers (the example plugin's router.cosine): chronomoe's are there
    assert all(f"'{router}'" in result.stdout for router in ("router.chrono", "router.loss_free", "router.topk"))
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


@pytest.mark.parametrize("config_cls", [ChronoConfig, LifecycleConfig, KernelConfig, ClockConfig])
def test_every_config_field_is_read_by_the_package(config_cls):
    import pathlib

    import attrs

    import chronomoe

    source = "".join(
        p.read_text() for p in pathlib.Path(chronomoe.__file__).parent.glob("*.py") if p.name != "config.py"
    )
    if config_cls is ClockConfig:  # read through its alphas property
        source += (
            pathlib.Path(chronomoe.__file__).with_name("config.py").read_text().split("def alphas")[1][:200]
        )
    for field in attrs.fields(config_cls):
        assert f".{field.name}" in source, f"{config_cls.__name__}.{field.name} is never used"


def test_lifecycle_and_kernel_configs_validate():
    with pytest.raises(ValueError, match="split_off"):
        LifecycleConfig(split_on=0.4, split_off=0.5)
    with pytest.raises(ValueError, match="warn_floor"):
        LifecycleConfig(warn_floor=0.6)
    with pytest.raises(ValueError, match="escalation_sigmas"):
        LifecycleConfig(escalation_sigmas=(3.0, 2.0, 9.0))
    config = LifecycleConfig(escalation_sigmas=(1.0, 2.0, 3.0))
    assert structure_config(unstructure_config(config), LifecycleConfig) == config
    with pytest.raises(ValueError, match="min_experts"):
        LifecycleConfig(min_experts=5, max_experts=4)
    with pytest.raises(ConfigError, match="window_steps"):
        structure_config({"window_steps": 0}, KernelConfig)


def test_registry_lists_the_config_classes():
    registry = get_registry()
    assert registry.get("layer.moe").load_config_class() is MoEConfig
    assert registry.get("router.chrono").summary
