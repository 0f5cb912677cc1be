"""Sessions for the MOSAIC monorepo.

Each package session builds wheels of that package and of its declared sibling dependencies
only, installs them (not editable) into a fresh virtualenv, and runs ``tests/<package>`` — which
proves the package installs and works alone. torch is installed first from the constraints file
so that no step ever resolves a newer (CUDA) torch.

``nox -t ci`` runs what CI runs; ``nox -s benchmarks`` writes ``benchmarks/results/*.json``;
``nox -s wheelhouse`` builds every wheel (dependencies included) into ``wheelhouse/``;
``nox -s fuzz`` is the nightly fuzz run (not part of ci).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox's own Python may be 3.10 (requirements/nox.txt installs tomli there)
    import tomli as tomllib

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "requirements" / "constraints.txt")
TEST_REQUIREMENTS = str(ROOT / "requirements" / "test.txt")
TYPECHECK_REQUIREMENTS = str(ROOT / "requirements" / "typecheck.txt")
RUFF = "ruff==0.17.6"

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True

#: distribution -> sibling distributions it depends on (mirrors each pyproject.toml)
PACKAGES: dict[str, tuple[str, ...]] = {
    "mosaic-core": (),
    "mosaic-layers": ("mosaic-core",),
    "mosaic-data": ("mosaic-core",),
    "chronomoe": ("mosaic-core",),
    "mosaic-runtime": ("mosaic-core",),
    "mosaic-cli": ("mosaic-core", "mosaic-runtime"),
}
EXAMPLE_PLUGIN = ROOT / "examples" / "mosaic-plugin-example"


def _closure(dists: tuple[str, ...]) -> list[str]:
    seen: list[str] = []
    for dist in dists:
        for dependency in (*_closure(PACKAGES[dist]), dist):
            if dependency not in seen:
                seen.append(dependency)
    return seen


#: optional extras a session's tests exercise: `mosaic plot` needs mosaic-runtime[plot], `mosaic sweep` [sweep],
#: the MCP tool builder's test (tests/mosaic-runtime/test_tools_mcp.py) [mcp]; chronomoe's remote experts [remote]
EXTRAS: dict[str, str] = {"mosaic_runtime": "plot,sweep,mcp", "chronomoe": "remote"}


def _install(session: nox.Session, *dists: str, extra_paths: tuple[Path, ...] = ()) -> None:
    """Install torch (pinned), then wheels of ``dists`` and their sibling closure (with the extras
    above), then test tools."""
    wheel_dir = Path(session.create_tmp()) / "wheels"
    if wheel_dir.exists():
        for old in wheel_dir.iterdir():
            old.unlink()
    sources = [ROOT / "packages" / dist for dist in _closure(dists)] + list(extra_paths)
    session.run(
        "python", "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheel_dir), *map(str, sources),
    )
    session.install("-q", "-c", CONSTRAINTS, "torch")
    wheels = sorted(wheel_dir.glob("*.whl"))
    session.install("-q", "-c", CONSTRAINTS, *map(str, wheels), "-r", TEST_REQUIREMENTS)
    # Extras in a second step: pip does not tie "path.whl[extra]" to the name other wheels require.
    extras = [_with_extra(wheel) for wheel in wheels if wheel.name.split("-")[0] in EXTRAS]
    if extras:
        session.install("-q", "-c", CONSTRAINTS, *extras)


def _optional_dependencies(dist: str) -> list[str]:
    """The extras ``dist``'s pyproject declares (``[project.optional-dependencies]``)."""
    with open(ROOT / "packages" / dist / "pyproject.toml", "rb") as handle:
        return sorted(tomllib.load(handle)["project"].get("optional-dependencies", {}))


def _with_extra(wheel: Path) -> str:
    name = wheel.name.split("-")[0]
    return f"{name}[{EXTRAS[name]}] @ {wheel.resolve().as_uri()}"


def _pytest(session: nox.Session, *paths: str) -> None:  # paths may include pytest options
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths, *session.posargs, env=env)


#: test files that run in a session of their own instead of their package's (a glob under ROOT)
SPLIT_OUT: dict[str, str] = {"mosaic-runtime": "tests/mosaic-runtime/test_tools_*.py"}


def _package_session(dist: str, tests: str) -> None:
    @nox.session(name=dist.removeprefix("mosaic-"), tags=["ci", "packages"])
    def run(session: nox.Session) -> None:
        _install(session, dist)
        session.chdir(ROOT)
        ignore = [f"--ignore-glob={SPLIT_OUT[dist]}"] if dist in SPLIT_OUT else []
        _pytest(session, tests, *ignore)

    run.__doc__ = f"Install {dist} alone (with only its declared dependencies) and run {tests}."


for _dist in PACKAGES:
    _package_session(_dist, f"tests/{_dist}")


@nox.session(tags=["ci", "packages"])
def tools(session: nox.Session) -> None:
    """The tool sandbox's tests (AST gate, confinement, seccomp, escape attempts), apart from the
    rest of mosaic-runtime's: the security-critical part runs, and fails, on its own."""
    _install(session, "mosaic-runtime")
    session.chdir(ROOT)
    _pytest(session, *sorted(str(path.relative_to(ROOT)) for path in ROOT.glob(SPLIT_OUT["mosaic-runtime"])))


@nox.session(tags=["ci"])
def example_plugin(session: nox.Session) -> None:
    """Install the out-of-tree example plugin the way a third party would and run its tests."""
    _install(session, "mosaic-core", "mosaic-layers", "chronomoe", extra_paths=(EXAMPLE_PLUGIN,))
    session.chdir(EXAMPLE_PLUGIN)
    _pytest(session, "tests")


@nox.session(tags=["ci"])
def integration(session: nox.Session) -> None:
    """Every package plus the example plugin: cross-package tests, docs output, the CLI end to end."""
    _install(session, *PACKAGES, extra_paths=(EXAMPLE_PLUGIN,))
    session.chdir(ROOT)
    # tests/fuzz at its ci profile (500 cases per property); `nox -s fuzz` runs the nightly size.
    _pytest(session, "tests/integration", "tests/fuzz")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Nightly fuzzing of envelopes, the codec and the JSONL reader: 10,000 cases per property
    (HYPOTHESIS_PROFILE=nightly unless set); every failure must be a MosaicError subclass."""
    _install(session, *PACKAGES)
    session.chdir(ROOT)
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "nightly")}
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz", *session.posargs, env=env)


@nox.session
def acceptance(session: nox.Session) -> None:
    """Issue acceptance checks that train for longer than CI allows or do not pass yet (outside the
    ci tag on purpose; see each file's docstring): every package installed, tests/acceptance."""
    _install(session, *PACKAGES, extra_paths=(EXAMPLE_PLUGIN,))
    session.chdir(ROOT)
    _pytest(session, "tests/acceptance")


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    """ruff over packages, tests, examples and benchmarks; one version (VERSION) for every package
    and sibling pin."""
    session.install("-q", RUFF, "tomli; python_version < '3.11'")
    session.run("ruff", "check", "packages", "tests", "examples", "benchmarks", "experiments", "scripts",
                "noxfile.py")
    session.run("python", str(ROOT / "scripts" / "check_versions.py"))


@nox.session(tags=["ci"])
def typecheck(session: nox.Session) -> None:
    """mypy over every package (strict on mosaic.core; settings in mypy.ini). Locally, after
    ./install.sh: .venv/bin/pip install -r requirements/typecheck.txt && .venv/bin/mypy"""
    session.install("-q", "-c", CONSTRAINTS, "torch")
    # everything the sources import: the packages with all their extras, and pytest (mosaic.core.testing)
    editable: list[str] = []
    for dist in PACKAGES:
        extras = ",".join(_optional_dependencies(dist))
        editable += ["-e", str(ROOT / "packages" / dist) + (f"[{extras}]" if extras else "")]
    session.install("-q", "-c", CONSTRAINTS, *editable, "-r", TEST_REQUIREMENTS, "-r", TYPECHECK_REQUIREMENTS)
    session.chdir(ROOT)
    session.run("mypy", *session.posargs)


@nox.session(tags=["ci"])
def install_core_layers(session: nox.Session) -> None:
    """The README's minimal install, from the checkout into a fresh venv: mosaic-core and
    mosaic-layers alone, then a MosaicLM forward pass (scripts/smoke_core_layers.py)."""
    session.install("-q", "-c", CONSTRAINTS, "torch")
    session.install("-q", "-c", CONSTRAINTS, str(ROOT / "packages" / "mosaic-core"),
                    str(ROOT / "packages" / "mosaic-layers"))
    session.run("python", str(ROOT / "scripts" / "smoke_core_layers.py"))


@nox.session
def wheelhouse(session: nox.Session) -> None:
    """Build a wheel of every package and of every dependency (torch pinned by the constraints)
    into wheelhouse/, then prove it suffices offline: install mosaic-layers with --no-index."""
    house = ROOT / "wheelhouse"
    house.mkdir(exist_ok=True)
    sources = [str(ROOT / "packages" / dist) for dist in PACKAGES]
    session.run("python", "-m", "pip", "wheel", "-q", "-c", CONSTRAINTS, "-w", str(house), *sources,
                f"{ROOT / 'packages' / 'mosaic-runtime'}[plot]")
    session.run("python", "-m", "pip", "install", "-q", "--no-index", "--find-links", str(house), "mosaic-layers")
    session.run("python", "-c", "from mosaic.core.plugins import get_registry; "
                "assert 'model.mosaic_lm' in get_registry(); print('offline install from wheelhouse/ ok')")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every benchmarks/bench_*.py (pass --quick for a smoke run); JSON in benchmarks/results/."""
    _install(session, *PACKAGES, extra_paths=(EXAMPLE_PLUGIN,))
    session.chdir(ROOT)
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session
def fuzz_tool_output(session: nox.Session) -> None:
    """Nightly-style: hypothesis fuzzing of the sandbox's tool-output parser, 20,000 cases per
    property (the CI sessions run the same properties at 1,000)."""
    _install(session, "mosaic-runtime")
    session.chdir(ROOT)
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "fuzz",
        "tests/mosaic-runtime/test_tools_output.py", *session.posargs,
        env={"HYPOTHESIS_PROFILE": "nightly"},
    )  # fmt: skip
