"""Check that the monorepo has one version: every package takes its version from ``VERSION`` and
every dependency on a sibling package pins exactly that version (``mosaic-core==X``).

Run by the ``lint`` nox session; exits 1 listing each mismatch. To release a new version, edit
``VERSION`` and the sibling pins together, then run this script.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the lint session installs tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
VERSION_FILE = ROOT / "VERSION"
#: what a pyproject must say to read its version from VERSION
HATCH_VERSION_PATH = "../../VERSION"
_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?$")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def problems(root: Path = ROOT) -> list[str]:
    """Every way the packages under ``root/packages`` disagree with ``root/VERSION``."""
    version_file = root / "VERSION"
    if not version_file.is_file():
        return [f"{version_file}: missing (the one version source of the monorepo)"]
    version = version_file.read_text(encoding="utf-8").strip()
    if not _VERSION.match(version):
        return [f"{version_file}: {version!r} is not a version like 1.2.3"]
    projects = {}
    for path in sorted((root / "packages").glob("*/pyproject.toml")):
        projects[path] = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    siblings = {project["name"] for project in projects.values()}
    found = []
    for path, project in projects.items():
        where = path.relative_to(root)
        if "version" in project:
            found.append(f"{where}: a hand-written version ({project['version']!r}); use dynamic = [\"version\"]")
        hatch_path = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("hatch", {}).get(
            "version", {}).get("path")
        if "version" not in project.get("dynamic", []) or hatch_path != HATCH_VERSION_PATH:
            found.append(f"{where}: must read its version from VERSION ([tool.hatch.version] path = "
                         f"{HATCH_VERSION_PATH!r}, dynamic = [\"version\"])")
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements.extend(extra)
        for requirement in requirements:
            match = _REQUIREMENT.match(requirement)
            if match is None or match.group(1) not in siblings:
                continue
            if match.group(2).replace(" ", "") != f"=={version}":
                found.append(f"{where}: {requirement!r} must pin the monorepo version: {match.group(1)}=={version}")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"one version: {VERSION_FILE.read_text(encoding='utf-8').strip()} (packages and sibling pins agree)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
