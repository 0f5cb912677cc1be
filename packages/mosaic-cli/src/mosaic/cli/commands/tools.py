"""``mosaic tools``: inspect, approve, revoke and run tools in a persistent tool registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

#: A definition is at most 64k characters of source plus a small manifest; anything far larger is
#: not a definition, and is refused before it is parsed.
MAX_DEFINITION_FILE_BYTES = 1 << 20

REGISTRY_OPTION = click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".mosaic") / "tools",
    show_default=True,
    envvar="MOSAIC_TOOLS_DIR",
    help="Tool registry directory (state, audit log).",
)
_KEY_FILE = click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="MOSAIC_AUDIT_KEY_FILE",
    help="Audit checkpoint key (default: audit.key in the user key directory, created if missing).",
)
_APPROVAL_KEY_FILE = click.option(
    "--approval-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="MOSAIC_APPROVAL_KEY_FILE",
    help="Key that signs approvals (default: tool-approval.key in the user key directory).",
)


def key_options(command: Any) -> Any:
    """Both key options. Keys live in the user key directory ($MOSAIC_KEY_DIR, else
    $XDG_CONFIG_HOME/mosaic/keys, else ~/.config/mosaic/keys), never in the registry directory."""
    return _KEY_FILE(_APPROVAL_KEY_FILE(command))


def _open(registry_dir: Path, key_file: Path | None, approval_key_file: Path | None = None) -> Any:
    from mosaic.runtime.tools.registry import open_registry

    return open_registry(registry_dir, key_file=key_file, approval_key_file=approval_key_file)


def _safe(text: str) -> str:
    from mosaic.runtime.tools.display import escape_control

    return escape_control(text, keep_newlines=True)


@click.group()
def tools() -> None:
    """Tools the model defined: list, show, approve, revoke, run (always sandboxed)."""


@tools.command("list")
@REGISTRY_OPTION
@key_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_tools(
    registry_dir: Path, key_file: Path | None, approval_key_file: Path | None, as_json: bool
) -> None:
    """List registered tools with their state and definition hash."""
    records = _open(registry_dir, key_file, approval_key_file).list()
    if as_json:
        rows = [
            {
                "name": r.definition.name,
                "state": r.state.value,
                "hash": r.hash,
                "calls": r.calls,
                "reasons": r.reasons,
            }
            for r in records
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not records:
        click.echo("no tools registered")
        return
    for r in records:
        reasons = f"  ({'; '.join(r.reasons)})" if r.reasons else ""
        click.echo(
            _safe(f"{r.definition.name:24s} {r.state.value:17s} {r.hash[:12]}  calls={r.calls}{reasons}")
        )


@tools.command("show")
@click.argument("name")
@REGISTRY_OPTION
@key_options
def show(name: str, registry_dir: Path, key_file: Path | None, approval_key_file: Path | None) -> None:
    """Show a tool's definition, capabilities, source and full hash (what an approver reviews)."""
    record = _open(registry_dir, key_file, approval_key_file).get(name)
    definition = record.definition
    capabilities = definition.capabilities
    above = capabilities.above_default()
    lines = [
        f"name:          {definition.name}",
        f"state:         {record.state.value}",
        f"hash:          {record.hash}",
        f"approved hash: {record.approved_hash or '-'}",
        f"description:   {definition.description}",
        f"parameters:    {json.dumps({k: v.type for k, v in definition.parameters.items()})}",
        f"imports:       {', '.join(capabilities.allowed_imports) or '-'}",
        (
            f"limits:        cpu {capabilities.cpu_seconds}s, wall {capabilities.wall_seconds}s, "
            f"memory {capabilities.memory_bytes}, output {capabilities.output_bytes}"
        ),
        f"needs approval: {'yes: ' + ', '.join(above) if above else 'no'}",
        f"reasons:       {'; '.join(record.reasons) or '-'}",
        "source:",
        definition.implementation,
    ]
    click.echo(_safe("\n".join(lines)))


@tools.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@REGISTRY_OPTION
@key_options
def add(file: Path, registry_dir: Path, key_file: Path | None, approval_key_file: Path | None) -> None:
    """Submit a tool definition (JSON file) as a human would; prints the resulting state."""
    from mosaic.core.atomic import read_plain_file
    from mosaic.core.errors import ConfigError, NotPlainFileError, ToolError
    from mosaic.runtime.tools.definition import ToolDefinition

    try:  # a FIFO given as the definition would block the read for ever
        data = read_plain_file(file, MAX_DEFINITION_FILE_BYTES)
    except NotPlainFileError as exc:
        raise ToolError(f"{exc}; not a tool definition") from None
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ToolError(f"{file}: not a JSON tool definition ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        definition = ToolDefinition.from_json_dict(raw)
    except ConfigError as exc:  # name the file the problems are in
        raise ConfigError(exc.problems, source=str(file)) from None
    record = _open(registry_dir, key_file, approval_key_file).submit(definition, actor="cli")
    click.echo(_safe(f"{definition.name}: {record.state.value} {record.hash}"))
    for reason in record.reasons:
        click.echo(_safe(f"  {reason}"))
    if record.state.value == "rejected":
        raise click.exceptions.Exit(1)


@tools.command("approve")
@click.argument("name")
@click.option(
    "--hash", "expected_hash", required=True, help="The full definition hash you reviewed (tools show)."
)
@REGISTRY_OPTION
@key_options
def approve(
    name: str, expected_hash: str, registry_dir: Path, key_file: Path | None, approval_key_file: Path | None
) -> None:
    """Approve a pending tool. Bound to the hash: any later edit voids the approval."""
    record = _open(registry_dir, key_file, approval_key_file).approve(name, expected_hash, actor="cli")
    click.echo(f"{name}: {record.state.value} (approved {record.approved_hash})")


@tools.command("revoke")
@click.argument("name")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@REGISTRY_OPTION
@key_options
def revoke(
    name: str, reason: str, registry_dir: Path, key_file: Path | None, approval_key_file: Path | None
) -> None:
    """Revoke a tool: it is rejected and can no longer run."""
    record = _open(registry_dir, key_file, approval_key_file).revoke(name, reason, actor="cli")
    click.echo(f"{name}: {record.state.value}")


@tools.command("run")
@click.argument("name")
@click.option("--args", "arguments", default="{}", show_default=True, help="Arguments as a JSON object.")
@click.option("--layers", "show_layers", is_flag=True, help="Also print which sandbox layers were active.")
@REGISTRY_OPTION
@key_options
def run(
    name: str,
    arguments: str,
    show_layers: bool,
    registry_dir: Path,
    key_file: Path | None,
    approval_key_file: Path | None,
) -> None:
    """Run an active tool in the sandbox and print its JSON result."""
    try:
        parsed = json.loads(arguments)
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(f"not JSON: {str(exc)[:200]}", param_hint="--args") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--args")
    result = _open(registry_dir, key_file, approval_key_file).call(name, parsed)
    output: dict[str, Any] = {"value": result.value, "stdout": result.stdout}
    if show_layers:
        output["layers"] = {layer: info.get("active") for layer, info in sorted(result.layers.items())}
    click.echo(json.dumps(output, indent=2, ensure_ascii=True))


@tools.command("layers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def layers(as_json: bool) -> None:
    """Probe which sandbox layers this machine supports (runs a no-op tool, requiring none).

    Exit status 1 when any layer that tools require by default is unavailable: tools would then be
    refused here.
    """
    from mosaic.runtime.tools.errors import SandboxUnavailableError
    from mosaic.runtime.tools.sandbox import OS_LAYERS, Sandbox, SandboxPolicy

    try:
        result = Sandbox(SandboxPolicy(required_layers=frozenset())).run("def run():\n    return 'ok'\n")
        layers_seen = result.layers
    except SandboxUnavailableError as exc:
        # refused even with no layer required (capabilities would remain): show what was verified
        click.echo(_safe(f"UNAVAILABLE: {exc}"), err=True)
        layers_seen = {**exc.layers, exc.layer: {"active": False, "detail": exc.detail}}
    report = {name: layers_seen[name] for name in sorted(layers_seen)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for name, info in report.items():
            mark = "active     " if info.get("active") else "UNAVAILABLE"
            click.echo(_safe(f"{name:20s} {mark} {info.get('detail', '')}"))
    if not all(report.get(layer, {}).get("active") for layer in OS_LAYERS):
        raise click.exceptions.Exit(1)
