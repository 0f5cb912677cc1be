"""House rules that hold for the repository as a whole: one version, typed packages, no test that
imports another, no module over 450 lines, and CI running the README's test command."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = sorted(path.parent for path in (ROOT / "packages").glob("*/pyproject.toml"))
MAX_MODULE_LINES = 450


def _check_versions_module():
    spec = importlib.util.spec_from_file_location("check_versions", ROOT / "scripts" / "check_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_package_and_sibling_pin_follows_the_version_file() -> None:
    assert _check_versions_module().problems(ROOT) == []


def test_a_stale_sibling_pin_is_reported(tmp_path: Path) -> None:
    (tmp_path / "packages").mkdir()
    shutil.copy(ROOT / "VERSION", tmp_path / "VERSION")
    for package in PACKAGE_DIRS:
        (tmp_path / "packages" / package.name).mkdir()
        shutil.copy(package / "pyproject.toml", tmp_path / "packages" / package.name / "pyproject.toml")
    layers = tmp_path / "packages" / "mosaic-layers" / "pyproject.toml"
    version = (ROOT / "VERSION").read_text().strip()
    layers.write_text(layers.read_text().replace(f"mosaic-core=={version}", "mosaic-core==0.0.1"))
    problems = _check_versions_module().problems(tmp_path)
    assert len(problems) == 1 and "mosaic-layers" in problems[0] and "mosaic-core==0.0.1" in problems[0]


def test_every_package_ships_py_typed() -> None:
    for package in PACKAGE_DIRS:
        markers = list((package / "src").rglob("py.typed"))
        assert markers, f"{package.name} has no py.typed"


def test_no_module_over_the_line_limit() -> None:
    too_long = {str(path.relative_to(ROOT)): count for path in ROOT.glob("packages/*/src/**/*.py")
                if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert too_long == {}, f"split these by idea: {too_long}"


def test_tests_import_no_other_test_and_never_edit_sys_path() -> None:
    test_modules = {path.stem for path in ROOT.glob("tests/**/*.py")}
    offenders = []
    for path in ROOT.glob("tests/**/*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (isinstance(node, ast.Attribute) and node.attr in {"insert", "append"}
                  and isinstance(node.value, ast.Attribute) and node.value.attr == "path"
                  and isinstance(node.value.value, ast.Name) and node.value.value.id == "sys"):
                offenders.append(f"{path.relative_to(ROOT)}: sys.path.{node.attr}")
                continue
            else:
                continue
            offenders.extend(f"{path.relative_to(ROOT)}: imports {name}" for name in names
                             if name.split(".")[0] in test_modules and name != "conftest")
    assert offenders == []


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Run the tests", 1)[1]
    match = re.search(r"```console\n(.+?)\n```", section, re.S)
    assert match is not None, "README.md's test section has no console block"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command_from_a_venv() -> None:
    command = _readme_test_command()
    assert "venv" in command and not command.startswith("python3 -m pip"), command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert ci_lines[-1] == command


def _import_root(package: Path) -> Path:
    """``src/chronomoe`` or ``src/mosaic/<name>``: where the package's module paths start."""
    src = package / "src"
    roots = [path.parent for path in src.rglob("py.typed")]
    assert len(roots) == 1, f"{package.name}: expected one py.typed, found {roots}"
    return roots[0]


def test_every_package_readme_maps_its_modules() -> None:
    unmapped = {}
    for package in PACKAGE_DIRS:
        readme = (package / "README.md").read_text(encoding="utf-8")
        root = _import_root(package)
        # every module, except the package __init__s that only name public objects
        modules = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.py")
                         if path.name != "__init__.py")
        missing = [module for module in modules if f"`{module}`" not in readme]
        if missing:
            unmapped[package.name] = missing
    assert unmapped == {}, f"add these modules to the package README's module map: {unmapped}"
