"""Every test session: keys that tests create (audit signing, tool approval) go to a throwaway key
directory, never the user's real one. A test that made ``~/.config/mosaic/keys/audit.key`` would
change what a later ``mosaic audit verify`` checks, in this run and on the developer's machine."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _throwaway_key_directory(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("mosaic-keys")
    monkeypatch.setenv("MOSAIC_KEY_DIR", str(keys))
    return keys
