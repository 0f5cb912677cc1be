"""Where secret keys live: a per-user key directory, never beside the files they protect.

A key that sits next to a log or a registry protects nothing against whoever can write that
directory: they read the key and re-sign. So keys default to a directory of the user running the
toolkit: ``$MOSAIC_KEY_DIR``, else ``$XDG_CONFIG_HOME/mosaic/keys``, else
``~/.config/mosaic/keys``, created mode 0700, each key file mode 0600. A caller may name a key file
explicitly (a flag or an environment variable) instead.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mosaic.core.atomic import read_plain_file
from mosaic.core.errors import AuditError, NotPlainFileError

KEY_DIR_ENV = "MOSAIC_KEY_DIR"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 4096
AUDIT_KEY_NAME = "audit.key"
APPROVAL_KEY_NAME = "tool-approval.key"


def default_key_dir() -> Path:
    """``$MOSAIC_KEY_DIR``, else ``$XDG_CONFIG_HOME/mosaic/keys``, else ``~/.config/mosaic/keys``."""
    explicit = os.environ.get(KEY_DIR_ENV)
    if explicit:
        return Path(explicit)
    config = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config) if config else Path.home() / ".config"
    return base / "mosaic" / "keys"


def key_path(name: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The key file to use: ``explicit`` when given, else ``name`` in the user key directory."""
    return Path(explicit) if explicit is not None else default_key_dir() / name


def read_key(path: str | os.PathLike[str]) -> bytes:
    """Read an existing key file (bounded; at least ``MIN_KEY_BYTES``)."""
    key_file = Path(path)
    try:  # a FIFO given as the key file would block the read for ever
        key = read_plain_file(key_file, MAX_KEY_BYTES + 1)
    except NotPlainFileError as exc:
        raise AuditError(f"key file {exc}") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise AuditError(
            f"key file {key_file} holds {len(key)} bytes; between {MIN_KEY_BYTES} and {MAX_KEY_BYTES} are required"
        )
    return key


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """Read a key file, creating a random one (mode 0600, its directory 0700) if it does not exist.

    Safe when several processes start at once (parallel training runs): the key is written whole to
    a private temporary file and hard-linked into place, which fails if another process got there
    first, so no reader ever sees a partly written key, and the loser reads the winner's key."""
    key_file = Path(path)
    try:
        if not key_file.parent.exists():
            key_file.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    except OSError as exc:  # a path component that is a file, a read-only disk
        raise AuditError(f"cannot create key file {key_file}: {exc.strerror or exc}") from None
    if key_file.exists():
        return read_key(key_file)
    key = secrets.token_bytes(KEY_BYTES)
    temporary = key_file.with_name(f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise AuditError(f"cannot create key file {key_file}: {exc.strerror or exc}") from None
    try:
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, key_file)
    except FileExistsError:
        return read_key(key_file)
    except OSError as exc:
        raise AuditError(f"cannot create key file {key_file}: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return key
