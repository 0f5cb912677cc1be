"""``mosaic audit``: check tamper-evident audit logs and publish their heads.

Modes, weakest to strongest (docs/sandbox.md says what each protects against): the hash chain alone
(edits, deletions, reordering); plus the signed checkpoint with the key (truncation, consistent
rewrites, deleted checkpoints, unsigned appends); plus ``--expect-head`` with a head published
earlier to a witness the log's writer cannot change (rollback to an older signed state).
"""

from __future__ import annotations

from pathlib import Path

import click

LOG_ARGUMENT = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
CHECKPOINT_OPTION = click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Signed checkpoint file (default: FILE.checkpoint.json).",
)
KEY_OPTION = click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    envvar="MOSAIC_AUDIT_KEY_FILE",
    help="Checkpoint signing key (default: audit.key in the user key directory, if it exists).",
)
NO_KEY_OPTION = click.option(
    "--no-key", is_flag=True, help="Do not check the checkpoint's signature (it is then NOT verified)."
)


def _key(key_file: Path | None, no_key: bool) -> bytes | None:
    from mosaic.core.keys import AUDIT_KEY_NAME, key_path, read_key

    if no_key:
        return None
    if key_file is not None:
        return read_key(key_file)
    default = key_path(AUDIT_KEY_NAME)
    return read_key(default) if default.is_file() else None


@click.group()
def audit() -> None:
    """Check tamper-evident audit logs (tool registry, ChronoMoE kernel)."""


@audit.command("verify")
@LOG_ARGUMENT
@CHECKPOINT_OPTION
@KEY_OPTION
@NO_KEY_OPTION
@click.option(
    "--expect-head",
    default=None,
    metavar="RECORDS:HASH",
    help="A head printed earlier by `mosaic audit head`: the log must still contain it.",
)
def verify(
    file: Path, checkpoint: Path | None, key_file: Path | None, no_key: bool, expect_head: str | None
) -> None:
    """Verify FILE's hash chain and signed checkpoint; report the first bad record.

    Exit status 0 when intact, 1 when tampering, damage or a rollback was found.
    """
    from mosaic.core.audit import AuditHead, verify_log
    from mosaic.core.errors import AuditError

    try:  # a malformed head is a usage mistake (exit 2), not a verdict on the log
        expected = AuditHead.parse(expect_head) if expect_head is not None else None
    except AuditError as exc:
        raise click.BadParameter(str(exc), param_hint="--expect-head") from None
    report = verify_log(file, key=_key(key_file, no_key), checkpoint_path=checkpoint, expect_head=expected)
    click.echo(_escape(report.render()))
    if not report.ok:
        raise click.exceptions.Exit(1)


@audit.command("head")
@LOG_ARGUMENT
@CHECKPOINT_OPTION
@KEY_OPTION
@NO_KEY_OPTION
def head(file: Path, checkpoint: Path | None, key_file: Path | None, no_key: bool) -> None:
    """Print FILE's head as RECORDS:HASH (after verifying it), to publish to an outside witness.

    Exit status 1 (and no head) when the log fails verification.
    """
    from mosaic.core.audit import verify_log

    report = verify_log(file, key=_key(key_file, no_key), checkpoint_path=checkpoint)
    if not report.ok or report.head is None:
        click.echo(_escape(report.render()), err=True)
        raise click.exceptions.Exit(1)
    click.echo(report.head.token())


def _escape(text: str) -> str:
    # Control characters in a tampered log must not reach the terminal raw.
    from mosaic.runtime.tools.display import escape_control

    return escape_control(text)
