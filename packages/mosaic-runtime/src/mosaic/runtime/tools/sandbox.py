"""The sandbox parent: gate the source, start a fresh confined child, supervise it, parse its result.

Layers, outermost first: the static AST gate (``ast_gate``), then a fresh ``python3 -I -S`` child
with an empty environment and only its three stdio pipes, in its own session, which confines
itself (``sandbox_child/sbx_confine``: network/PID/mount namespaces and a minimal root, rlimits,
unprivileged user, no_new_privs, Landlock, seccomp; each probed after it is applied) before the
restricted runtime (``sbx_runtime``) runs the tool. The parent kills the whole process group at the
wall-clock limit or when output exceeds its cap, accepts a status frame written before the tool ran
and one bounded result frame (``sandbox_output``), and checks no process of the call survives.

Fail closed: every OS layer is required by default, and a child that cannot apply a required
layer runs nothing and reports ``SandboxUnavailableError``.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from mosaic.core.errors import MosaicError, SandboxError, ToolError
from mosaic.runtime.tools.ast_gate import check_source, import_problem
from mosaic.runtime.tools.display import escape_control
from mosaic.runtime.tools.errors import (
    SandboxLimitError,
    SandboxUnavailableError,
    ToolOutputError,
    ToolRejectedError,
)
from mosaic.runtime.tools.module_views import attribute_table
from mosaic.runtime.tools.sandbox_output import parse_result, parse_status

CHILD_DIR = Path(__file__).resolve().parent / "sandbox_child"
OS_LAYERS = (
    "network_namespace",
    "pid_namespace",
    "mount_namespace",
    "rlimits",
    "drop_privileges",
    "no_new_privs",
    "landlock",
    "seccomp",
)
LANGUAGE_LAYERS = ("ast_gate", "restricted_runtime")
STDERR_CAP = 16_384
MAX_REQUEST_BYTES = 4 * 2**20  # read by the child before its limits apply


def _positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise SandboxError(f"sandbox limit {attribute.name} must be positive, got {value}")


@attrs.frozen
class SandboxLimits:
    """Resource limits of one call. Small defaults: tools are meant to be quick functions."""

    cpu_seconds: int = attrs.field(default=2, validator=_positive)
    wall_seconds: float = attrs.field(default=5.0, validator=_positive)
    memory_bytes: int = attrs.field(default=256 * 2**20, validator=_positive)
    file_bytes: int = attrs.field(default=4 * 2**20, validator=_positive)
    scratch_bytes: int = attrs.field(default=8 * 2**20, validator=_positive)
    scratch_inodes: int = attrs.field(default=256, validator=_positive)
    open_files: int = attrs.field(default=64, validator=_positive)
    processes: int = attrs.field(default=64, validator=_positive)
    output_bytes: int = attrs.field(default=64 * 1024, validator=_positive)


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _layer_set(layers: Iterable[str]) -> frozenset[str]:
    return frozenset(layers)


@attrs.frozen
class SandboxPolicy:
    """Which layers run and which are required. ``language_layers=False`` switches off the AST
    gate and the restricted runtime (used to prove the OS layers contain attacks on their own)."""

    limits: SandboxLimits = SandboxLimits()
    language_layers: bool = True
    required_layers: frozenset[str] = attrs.field(default=frozenset(OS_LAYERS), converter=_layer_set)
    landlock_min_abi: int = 1
    run_as: tuple[int, int] = attrs.field(factory=_nobody)
    python: str = attrs.field(factory=lambda: os.path.realpath(sys.executable))
    #: Tests only: the child skips these layers' kernel calls but still probes them, which shows
    #: that a layer without effect is reported unavailable instead of active.
    skip_layer_calls_for_testing: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)

    def __attrs_post_init__(self) -> None:
        unknown = sorted((set(self.required_layers) | self.skip_layer_calls_for_testing) - set(OS_LAYERS))
        if unknown:
            raise SandboxError(f"unknown sandbox layers {unknown}; known: {', '.join(OS_LAYERS)}")


@attrs.frozen
class SandboxResult:
    value: Any
    stdout: str
    stdout_truncated: bool
    layers: dict[str, dict[str, Any]]
    wall_seconds: float


def surviving_processes(session_id: int, *, include_zombies: bool = False) -> list[int]:
    """Pids of processes in session ``session_id`` (the call's session; the child leads it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 3 and int(fields[3]) == session_id and (include_zombies or fields[0] != "Z"):
            found.append(int(entry))
    return found


class Sandbox:
    """Runs tool source under a ``SandboxPolicy``. Thread-safe: each call is its own process."""

    def __init__(
        self, policy: SandboxPolicy | None = None, *, on_start: Callable[[int], None] | None = None
    ) -> None:
        """``on_start`` is called with each call's session id (the child's pid), e.g. to audit that
        no process of the call outlives it."""
        self.policy = policy or SandboxPolicy()
        self._on_start = on_start

    def run(
        self,
        source: str,
        params: dict[str, Any] | None = None,
        *,
        allowed_modules: tuple[str, ...] = (),
        limits: SandboxLimits | None = None,
        entry: str = "run",
        name: str = "tool",
    ) -> SandboxResult:
        policy = self.policy
        limits = limits or policy.limits
        if sys.platform != "linux":
            raise SandboxUnavailableError("platform", f"the sandbox needs Linux, this is {sys.platform}")
        if policy.language_layers:
            problems = [problem for module in allowed_modules if (problem := import_problem(module))]
            problems += check_source(source, frozenset(allowed_modules), entry=entry)
            if problems:
                raise ToolRejectedError(name, problems)
        request = {
            "source": source,
            "params": params or {},
            "entry": entry,
            "language_layers": policy.language_layers,
            "allowed_modules": list(allowed_modules),
            "module_attributes": attribute_table(allowed_modules),
            "required_layers": sorted(policy.required_layers),
            "landlock_min_abi": policy.landlock_min_abi,
            "skip_layer_calls": sorted(policy.skip_layer_calls_for_testing),
            "limits": {**attrs.asdict(limits), "output_bytes": limits.output_bytes // 2},
            "uid": policy.run_as[0],
            "gid": policy.run_as[1],
            "child_dir": str(CHILD_DIR),
        }
        try:
            scratch = tempfile.mkdtemp(prefix="mosaic-sbx-")
        except OSError as exc:
            raise SandboxError(f"tool {name!r}: could not start the sandbox (scratch directory): {exc}") from exc
        try:
            os.chmod(scratch, 0o700)
            if os.geteuid() == 0:
                os.chown(scratch, *policy.run_as)
            request["scratch"] = scratch
            payload = marshal.dumps(request)
            if len(payload) > MAX_REQUEST_BYTES:
                raise ToolError(
                    f"tool {name!r}: source and arguments take {len(payload)} bytes; "
                    f"the limit is {MAX_REQUEST_BYTES}"
                )
            return self._run_child(payload, limits, name, policy)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run_child(
        self, request: bytes, limits: SandboxLimits, name: str, policy: SandboxPolicy
    ) -> SandboxResult:
        stub = f"import sys; sys.path.insert(0, {str(CHILD_DIR)!r}); import sbx_main; sbx_main.main()"
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [policy.python, "-I", "-S", "-c", stub],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={},
                cwd="/",
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxError(f"tool {name!r}: could not start the sandbox child {policy.python}: {exc}") from exc
        if self._on_start is not None:
            self._on_start(proc.pid)
        try:
            stdout, stderr, limit = _supervise(proc, request, limits.wall_seconds, limits.output_bytes)
        finally:
            _kill_group(proc)
        elapsed = time.monotonic() - started
        result = (
            None
            if limit is not None
            else _parse_result(stdout, stderr, proc.returncode, name, elapsed, policy)
        )
        # A tool that returned normally inside its own PID namespace cannot leave processes behind
        # (the namespace's init exited, so the kernel killed and reaped the rest before our child
        # could exit). Every other ending is checked by scanning the call's session.
        if not (isinstance(result, SandboxResult) and result.layers.get("pid_namespace", {}).get("active")):
            survivors = _await_no_survivors(proc.pid)
            if survivors:
                raise SandboxError(f"processes {survivors} of tool {name!r} survived the call")
        if limit is not None:
            raise SandboxLimitError(*limit)
        if isinstance(result, BaseException):
            raise result
        if result is None:  # unreachable: a missing result always comes with a limit
            raise SandboxError(f"tool {name!r} produced no result")
        return result


def _await_no_survivors(session_id: int, grace_seconds: float = 1.0) -> list[int]:
    """Wait (briefly) until a call's processes have finished dying; SIGKILL and return any that are
    still alive. A session id pins its pid, so these pids cannot belong to anyone else."""
    deadline = time.monotonic() + grace_seconds
    while surviving_processes(session_id, include_zombies=True) and time.monotonic() < deadline:
        time.sleep(0.005)
    survivors = surviving_processes(session_id)
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return survivors


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill everything the call started. While the child still runs, its descendants die first so
    that the child (the session leader, outside the tool's PID namespace) reaps them and exits by
    itself; killing the leader first would leave them as zombies for the system's init. The group
    is signalled only while the leader is unreaped, so a recycled process-group id is never hit."""
    if proc.poll() is None:
        for pid in surviving_processes(proc.pid):
            if pid != proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            stream.close()


def _supervise(
    proc: subprocess.Popen, request: bytes, wall_seconds: float, output_cap: int
) -> tuple[bytes, bytes, tuple[str, str] | None]:
    """Feed the request, collect capped output, enforce the wall clock. Returns (stdout, stderr,
    limit) where limit names the exceeded limit, if any (the group is then already killed)."""
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    if stdin is None or stdout is None or stderr is None:
        raise SandboxError("the sandbox child was started without its three pipes")
    deadline = time.monotonic() + wall_seconds
    selector = selectors.DefaultSelector()
    out_fd, err_fd = stdout.fileno(), stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray()}
    caps = {out_fd: output_cap, err_fd: STDERR_CAP}
    pending = memoryview(request)
    for stream in (stdin, stdout, stderr):
        os.set_blocking(stream.fileno(), False)
    selector.register(stdin, selectors.EVENT_WRITE)
    selector.register(stdout, selectors.EVENT_READ)
    selector.register(stderr, selectors.EVENT_READ)
    limit = None
    try:
        while selector.get_map() and limit is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                limit = ("wall clock", f"still running at the {wall_seconds:g} s limit")
                break
            for key, _ in selector.select(remaining):
                fd = key.fd
                if key.fileobj is stdin:
                    try:
                        pending = pending[os.write(fd, pending) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(stdin)
                        stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffers[fd] += chunk
                if len(buffers[fd]) > caps[fd]:
                    which = "output" if fd == out_fd else "error output"
                    limit = ("output cap", f"{which} exceeded {caps[fd]} bytes")
                    break
        if limit is None:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                limit = ("wall clock", "still running after its output closed")
    finally:
        selector.close()
    if limit is not None:
        _kill_group(proc)
    return bytes(buffers[out_fd]), bytes(buffers[err_fd]), limit


_SIGNAL_LIMITS: dict[int, str] = {
    signal.SIGXCPU: "CPU time",
    signal.SIGKILL: "killed (CPU hard limit or memory)",
    signal.SIGXFSZ: "file size",
    signal.SIGSYS: "forbidden system call",
}


def _parse_result(
    stdout: bytes, stderr: bytes, returncode: int, name: str, elapsed: float, policy: SandboxPolicy
) -> SandboxResult | MosaicError:
    """The call's result, or the typed error it ended in (returned, so that the caller can check
    for survivors before raising it)."""
    try:
        return parse_child_output(stdout, stderr, returncode, name, elapsed, policy)
    except MosaicError as exc:
        return exc


def parse_child_output(
    stdout: bytes, stderr: bytes, returncode: int, name: str, elapsed: float, policy: SandboxPolicy
) -> SandboxResult:
    status, newline, rest = stdout.partition(b"\n")
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if newline:
        layers = parse_status(status, name)
        missing = [layer for layer in sorted(policy.required_layers) if not layers.get(layer, {}).get("active")]
        if missing:
            raise SandboxUnavailableError(missing[0], "the child did not report this required layer active")
    if not newline or not rest:
        if signum in _SIGNAL_LIMITS:
            raise SandboxLimitError(
                _SIGNAL_LIMITS[signum], f"child ended by signal {signal.Signals(signum).name}"
            )
        tail = escape_control(stderr[-600:].decode("utf-8", "replace"))
        raise SandboxError(
            f"tool {name!r} produced no result (exit status {returncode}); stderr: {tail!r}"
        )
    result, newline, extra = rest.partition(b"\n")
    if not newline or extra:
        raise ToolOutputError(name, "output outside the result frame (a second frame, or a torn one)")
    value, tool_stdout, truncated = parse_result(result, name)
    layers["ast_gate"] = {"active": policy.language_layers, "detail": "default-deny syntax allow-list"}
    layers["supervision"] = {
        "active": True,
        "detail": "wall-clock kill of the process group, output cap, framed bounded result, no survivors",
    }
    return SandboxResult(
        value=value, stdout=tool_stdout, stdout_truncated=truncated, layers=layers, wall_seconds=elapsed
    )
