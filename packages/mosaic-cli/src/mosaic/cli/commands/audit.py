"""``mosaic audit``: check tamper-evident audit logs."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def audit() -> None:
    """Check tamper-evident audit logs (tool registry, ChronoMoE kernel)."""


@audit.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Signed checkpoint file (default: FILE.checkpoint.json).",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    envvar="MOSAIC_AUDIT_KEY_FILE",
    help="Checkpoint signing key; without it the checkpoint's signature is not checked.",
)
def verify(file: Path, checkpoint: Path | None, key_file: Path | None) -> None:
    """Verify FILE's hash chain and signed checkpoint; report the first bad record.

    Exit status 0 when intact, 1 when tampering or damage was found.
    """
    from mosaic.core.audit import verify_log

    key = key_file.read_bytes() if key_file is not None else None
    report = verify_log(file, key=key, checkpoint_path=checkpoint)
    click.echo(report.render().translate(_CONTROL_ESCAPES))
    if not report.ok:
        raise click.exceptions.Exit(1)


# Control characters in a tampered log must not reach the terminal raw.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F] if chr(code) != "\n"}
