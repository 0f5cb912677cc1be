"""Each OS layer is reported active only after a probe saw it take effect; capabilities are
verified empty; no process of a call survives it, with or without a PID namespace."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mosaic.runtime.tools.errors import SandboxUnavailableError
from mosaic.runtime.tools.sandbox import CHILD_DIR, OS_LAYERS, Sandbox, SandboxLimits, SandboxPolicy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")

# The child's modules import each other by bare name; load the probe module the way the child does.
_spec = importlib.util.spec_from_file_location("sbx_probe", CHILD_DIR / "sbx_probe.py")
sbx_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sbx_probe)
NOOP = "def run():\n    return 1\n"
LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=4.0)


@pytest.mark.parametrize("layer", OS_LAYERS)
def test_a_layer_without_effect_is_reported_unavailable(layer):
    """Issue 17 (5): a kernel call that 'succeeds' without effect must not be reported active."""
    optional = Sandbox(SandboxPolicy(limits=LIMITS, required_layers=(), skip_layer_calls_for_testing={layer}))
    if layer == "drop_privileges":
        # still root with every capability: refused even when no layer is required
        with pytest.raises(SandboxUnavailableError, match="would hold capabilities"):
            optional.run(NOOP)
    else:
        result = optional.run(NOOP)
        assert result.layers[layer]["active"] is False, result.layers[layer]
    with pytest.raises(SandboxUnavailableError):
        Sandbox(SandboxPolicy(limits=LIMITS, skip_layer_calls_for_testing={layer})).run(NOOP)


def test_capabilities_are_verified_empty_from_proc_status():
    layers = Sandbox(SandboxPolicy(limits=LIMITS)).run(NOOP).layers
    assert "CapEff, CapPrm, CapAmb, CapBnd, CapInh verified 0" in layers["drop_privileges"]["detail"]
    status = "Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n"
    empty = "".join(f"{f}:\t0000000000000000\n" for f in sbx_probe.CAPABILITY_FIELDS)
    assert sbx_probe.capability_problem(sbx_probe.parse_status(status + empty), 65534, 65534) is None
    for field in sbx_probe.CAPABILITY_FIELDS:
        held = empty.replace(f"{field}:\t0000000000000000", f"{field}:\t0000000000200000")
        problem = sbx_probe.capability_problem(sbx_probe.parse_status(status + held), 65534, 65534)
        assert problem and field in problem
    assert sbx_probe.capability_problem(sbx_probe.parse_status(status), 65534, 65534)


CAPPED_PARENT = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("e", ctypes.c_uint32), ("p", ctypes.c_uint32), ("i", ctypes.c_uint32)]
    SYS_ADMIN, DAC_OVERRIDE = 21, 1
    bits = (1 << SYS_ADMIN) | (1 << DAC_OVERRIDE)
    assert libc.prctl(8, 1, 0, 0, 0) == 0  # PR_SET_KEEPCAPS
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    data = (Data * 2)()
    data[0].e = data[0].p = data[0].i = bits
    assert libc.capset(ctypes.byref(Header(0x20080522, 0)), data) == 0
    for cap in (SYS_ADMIN, DAC_OVERRIDE):
        assert libc.prctl(47, 2, cap, 0, 0) == 0  # PR_CAP_AMBIENT_RAISE
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[1]])
    """
)
CAPPED_PROGRAM = textwrap.dedent(
    """
    from mosaic.core.errors import MosaicError
    from mosaic.runtime.tools.sandbox import Sandbox, SandboxPolicy
    status = open("/proc/self/status").read()
    print("PARENT", [line for line in status.splitlines() if line.startswith("CapEff")])
    try:
        result = Sandbox(SandboxPolicy(run_as=(65534, 65534))).run("def run():\\n    return 1\\n")
        print("RAN", result.layers["drop_privileges"])
    except MosaicError as exc:
        print("REFUSED", type(exc).__name__, exc)
    """
)


def test_a_non_root_parent_with_ambient_capabilities_is_refused():
    """Issue 17 (5): started by uid 65534 holding ambient CAP_SYS_ADMIN with run_as equal to its own
    uid, the child reported privileges dropped and kept CapEff=0x200000."""
    done = subprocess.run(
        [sys.executable, "-c", CAPPED_PARENT, CAPPED_PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert "PARENT ['CapEff:\\t0000000000200002']" in done.stdout, done.stdout + done.stderr
    assert "REFUSED SandboxUnavailableError" in done.stdout, done.stdout + done.stderr
    assert "drop_privileges" in done.stdout


SURVIVOR = """
import os, time
def run(**_):
    os.setsid()
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    return pid
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_setsid_fork_survivor_is_reaped_without_a_pid_namespace():
    """Issue 17 (5): with required_layers=() and no PID namespace, a setsid + fork process outlived
    the call because survivors were looked for in the call's session only."""
    policy = SandboxPolicy(
        limits=LIMITS,
        language_layers=False,
        required_layers=(),
        skip_layer_calls_for_testing={"pid_namespace", "seccomp"},
    )
    result = Sandbox(policy).run(SURVIVOR, allowed_modules=("time",))
    assert result.layers["pid_namespace"]["active"] is False
    survivor = result.value
    assert isinstance(survivor, int) and survivor > 0
    deadline = time.monotonic() + 2.0
    while _alive(survivor) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(survivor), f"process {survivor} outlived the call"
