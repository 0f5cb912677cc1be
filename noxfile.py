"""Sessions for the MOSAIC monorepo.

Each package session builds wheels of that package and of its declared sibling dependencies
only, installs them (not editable) into a fresh virtualenv, and runs ``tests/<package>`` — which
proves the package installs and works alone. torch is installed first from the constraints file
so that no step ever resolves a newer (CUDA) torch.

``nox -t ci`` runs what CI runs; ``nox -s benchmarks`` writes ``benchmarks/results/*.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "requirements" / "constraints.txt")
TEST_REQUIREMENTS = str(ROOT / "requirements" / "test.txt")

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


#: optional extras a session's tests exercise: `mosaic plot` needs mosaic-runtime[plot], `mosaic sweep` [sweep]
EXTRAS: dict[str, str] = {"mosaic_runtime": "plot,sweep"}


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


def _with_extra(wheel: Path) -> str:
    name = wheel.name.split("-")[0]
    return f"{name}[{EXTRAS[name]}] @ {wheel.resolve().as_uri()}"


def _pytest(session: nox.Session, *paths: str) -> None:
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths, *session.posargs, env=env)


def _package_session(dist: str, tests: str) -> None:
    @nox.session(name=dist.removeprefix("mosaic-"), tags=["ci", "packages"])
    def run(session: nox.Session) -> None:
        _install(session, dist)
        session.chdir(ROOT)
        _pytest(session, tests)

    run.__doc__ = f"Install {dist} alone (with only its declared dependencies) and run {tests}."


for _dist in PACKAGES:
    _package_session(_dist, f"tests/{_dist}")


@nox.session(tags=["ci"])
def example_plugin(session: nox.Session) -> None:
    """Install the out-of-tree example plugin the way a third party would and run its tests."""
    _install(session, "mosaic-core", "mosaic-layers", extra_paths=(EXAMPLE_PLUGIN,))
    session.chdir(EXAMPLE_PLUGIN)
    _pytest(session, "tests")


@nox.session(tags=["ci"])
def integration(session: nox.Session) -> None:
    """Every package plus the example plugin: cross-package tests, docs output, the CLI end to end."""
    _install(session, *PACKAGES, extra_paths=(EXAMPLE_PLUGIN,))
    session.chdir(ROOT)
    _pytest(session, "tests/integration")


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    """ruff over packages, tests, examples and benchmarks."""
    session.install("-q", "ruff==0.17.6")
    session.run("ruff", "check", "packages", "tests", "examples", "benchmarks", "experiments", "noxfile.py")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every benchmarks/bench_*.py (pass --quick for a smoke run); JSON in benchmarks/results/."""
    _install(session, *PACKAGES, extra_paths=(EXAMPLE_PLUGIN,))
    session.chdir(ROOT)
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
