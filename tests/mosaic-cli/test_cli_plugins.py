"""`mosaic --help`, `plugins list` and `components list` survive broken plugins and explain them."""

from __future__ import annotations

import json

import pytest

BROKEN_IMPORT = """
raise RuntimeError("this plugin is broken at import")
"""

GOOD = """
from mosaic.core import hookimpl

@hookimpl
def register_drives(register):
    register("drive.boredom", "collections:OrderedDict", summary="gets bored")
"""

DUPLICATE = """
from mosaic.core import hookimpl

@hookimpl
def register_drives(register):
    register("drive.boredom", "collections:OrderedDict", summary="also gets bored")
"""

MISSPELT = """
from mosaic.core import hookimpl

@hookimpl
def register_drive(register):
    register("drive.typo", "collections:OrderedDict", summary="never registered")
"""

BROKEN_COMMAND = """
from mosaic.core import hookimpl

@hookimpl
def register_commands(cli):
    raise ValueError("cannot build my command")
"""

WORKING_COMMAND = """
import click
from mosaic.core import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        '''Say hello from a plugin.'''
        click.echo("hello from a plugin")
"""

BROKEN_CASES = {
    "raises at import": ("zz-broken", BROKEN_IMPORT, "RuntimeError: this plugin is broken at import"),
    "duplicate ID": ("zz-dup", DUPLICATE, "drive.boredom is provided twice: by aa-good 0.1 and by zz-dup 0.1"),
    "misspelt hook": ("zz-typo", MISSPELT, "unknown hook 'register_drive' (did you mean 'register_drives'?)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_broken_plugin_leaves_the_cli_working_and_is_explained(fake_plugins, case: str) -> None:
    name, source, error = BROKEN_CASES[case]
    fake_plugins.add("aa-good", GOOD)
    fake_plugins.add(name, source)

    help_run = fake_plugins.run("--help")
    assert help_run.returncode == 0, help_run.stderr
    assert "plugins" in help_run.stdout

    listing = fake_plugins.run("plugins", "list")
    assert listing.returncode == 0, listing.stderr
    assert name in listing.stdout and "failed" in listing.stdout
    assert error in listing.stdout
    assert f"MOSAIC_DISABLE_PLUGINS={name}" in listing.stdout

    components = fake_plugins.run("components", "list")
    assert components.returncode == 0, components.stderr
    assert "drive.boredom" in components.stdout

    as_json = json.loads(fake_plugins.run("plugins", "list", "--json").stdout)
    broken = next(p for p in as_json if p["name"] == name)
    assert broken["status"] == "failed" and error in broken["error"]
    assert broken["components"] == {}

    strict = fake_plugins.run("plugins", "list", env={"MOSAIC_STRICT_PLUGINS": "1"})
    assert strict.returncode != 0
    assert name in strict.stderr and "MOSAIC_STRICT_PLUGINS=1" in strict.stderr
    assert "Traceback" not in strict.stderr

    disabled = fake_plugins.run("plugins", "list", "--json", env={"MOSAIC_DISABLE_PLUGINS": name})
    assert next(p for p in json.loads(disabled.stdout) if p["name"] == name)["status"] == "disabled"


def test_json_listing_has_the_documented_fields(fake_plugins) -> None:
    fake_plugins.add("aa-good", GOOD, version="1.4")
    records = json.loads(fake_plugins.run("plugins", "list", "--json").stdout)
    assert [r for r in records if r["name"] == "aa-good"] == [
        {
            "name": "aa-good",
            "distribution": "aa-good",
            "entry_point": "aa_good_plugin",
            "version": "1.4",
            "hooks": ["register_drives"],
            "components": {"drive": ["drive.boredom"]},
            "status": "loaded",
            "error": None,
        }
    ]
    with_builtins = json.loads(fake_plugins.run("plugins", "list", "--json", "--all").stdout)
    assert {"mosaic-core", "aa-good"} <= {p["name"] for p in with_builtins}


def test_requirements_format_lists_distributions(fake_plugins) -> None:
    fake_plugins.add("aa-good", GOOD, version="1.4")
    out = fake_plugins.run("plugins", "list", "--format", "requirements").stdout
    assert "aa-good==1.4" in out.strip().splitlines()


def test_load_only_selection(fake_plugins) -> None:
    fake_plugins.add("aa-good", GOOD)
    fake_plugins.add("bb-other", MISSPELT)
    records = json.loads(fake_plugins.run("plugins", "list", "--json", env={"MOSAIC_LOAD_PLUGINS": "aa-good"}).stdout)
    statuses = {p["name"]: p["status"] for p in records}
    assert statuses["aa-good"] == "loaded" and statuses["bb-other"] == "disabled"
    assert all(status == "disabled" for name, status in statuses.items() if name != "aa-good")


def test_plugin_commands_and_broken_command_placeholder(fake_plugins) -> None:
    fake_plugins.add("hello-plugin", WORKING_COMMAND)
    fake_plugins.add("badcmd-plugin", BROKEN_COMMAND)
    help_run = fake_plugins.run("--help")
    assert help_run.returncode == 0
    assert "hello" in help_run.stdout and "[broken plugin badcmd-plugin]" in help_run.stdout
    assert fake_plugins.run("hello").stdout.strip() == "hello from a plugin"
    broken = fake_plugins.run("badcmd-plugin")
    assert broken.returncode != 0
    assert "cannot build my command" in broken.stderr
    assert "MOSAIC_DISABLE_PLUGINS=badcmd-plugin" in broken.stderr


def test_components_show_and_unknown_id(fake_plugins) -> None:
    fake_plugins.add("aa-good", GOOD)
    shown = fake_plugins.run("components", "show", "drive.boredom")
    assert shown.returncode == 0
    assert "provided by: aa-good 0.1" in shown.stdout
    unknown = fake_plugins.run("components", "show", "drive.bordem")
    assert unknown.returncode == 1
    assert "did you mean drive.boredom" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_listing_plugins_imports_no_torch(fake_plugins) -> None:
    fake_plugins.add("aa-good", GOOD)
    code = (
        "import sys\n"
        "from mosaic.cli.main import cli\n"
        "for args in (['plugins', 'list', '--all'], ['components', 'list'], ['--help']):\n"
        "    try:\n"
        "        cli.main(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    result = fake_plugins.run(code=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "NO_TORCH"


def test_listing_plugins_skips_the_logging_set_up(fake_plugins) -> None:
    """Start-up (issue 18): ``plugins list`` never logs, so it imports neither structlog (which pulls
    in asyncio) nor the version metadata that only ``--version`` shows."""
    code = (
        "import sys\n"
        "from mosaic.cli.main import cli\n"
        "try:\n"
        "    cli.main(['plugins', 'list', '--all'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(name for name in ('structlog', 'mosaic.core.version') if name in sys.modules))\n"
    )
    result = fake_plugins.run(code=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_version(fake_plugins) -> None:
    result = fake_plugins.run("--version")
    assert result.returncode == 0 and result.stdout.startswith("mosaic 0.1.0")


BAD_FACTORY_PATH = """
from mosaic.core import hookimpl

@hookimpl
def register_drives(register):
    register("drive.ghost", "no_such_module_anywhere:Ghost", summary="a factory path that cannot import")
"""

HALF_COMMAND = """
import click
from mosaic.core import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command("half-made")
    def half_made():
        click.echo("should not be reachable")
    raise RuntimeError("failed after adding a command")
"""


def test_check_imports_factory_paths_and_fails_the_plugin(fake_plugins) -> None:
    fake_plugins.add("aa-ghost", BAD_FACTORY_PATH)
    plain = fake_plugins.run("plugins", "list")
    assert plain.returncode == 0 and "loaded" in plain.stdout  # listing alone never imports factories
    checked = fake_plugins.run("plugins", "list", "--check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "failed" in checked.stdout
    assert "drive.ghost: factory cannot be imported" in checked.stdout and "no_such_module_anywhere" in checked.stdout


def test_register_commands_failing_after_adding_is_reported_and_rolled_back(fake_plugins) -> None:
    fake_plugins.add("half-plugin", HALF_COMMAND)
    help_run = fake_plugins.run("--help")
    assert help_run.returncode == 0
    assert "half-made" not in help_run.stdout and "[broken plugin half-plugin]" in help_run.stdout
    assert fake_plugins.run("half-made").returncode != 0


def test_run_warns_in_one_line_about_failed_plugins(fake_plugins) -> None:
    fake_plugins.add("zz-broken", BROKEN_IMPORT)
    result = fake_plugins.run("run", "no_such_preset_for_this_test")
    assert result.returncode != 0
    warnings = [line for line in result.stderr.splitlines() if "failed to load" in line]
    assert len(warnings) == 1 and "zz-broken" in warnings[0]


def test_typo_in_plugin_selection_is_an_error_not_a_silent_disable(fake_plugins) -> None:
    result = fake_plugins.run("plugins", "list", "--all", env={"MOSAIC_DISABLE_PLUGINS": "mosaic-runtme"})
    assert result.returncode != 0
    assert "did you mean 'mosaic-runtime'" in result.stderr and "Traceback" not in result.stderr
