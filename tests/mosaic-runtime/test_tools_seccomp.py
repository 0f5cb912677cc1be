"""The hand-assembled seccomp program, checked by a small classic-BPF interpreter (the reference twin
of the kernel's evaluation), the Landlock access masks, and the child's JSON encoder (checked
against the standard library's decoder)."""

from __future__ import annotations

import errno
import importlib.util
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.runtime.tools.sandbox import CHILD_DIR


def _child_module(name):
    """The child's modules import each other by bare name; load them the way the child does."""
    spec = importlib.util.spec_from_file_location(name, CHILD_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sbx_landlock = _child_module("sbx_landlock")
sc = _child_module("sbx_seccomp")

OWN_PID = 2


def evaluate(prog, nr, args=(0, 0, 0, 0, 0, 0), arch=sc.AUDIT_ARCH_X86_64):
    args = (tuple(args) + (0,) * 6)[:6]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *[a & (2**64 - 1) for a in args])
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == sc.LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code in (sc.JEQ_K, sc.JGE_K, sc.JSET_K):
            taken = {sc.JEQ_K: acc == k, sc.JGE_K: acc >= k, sc.JSET_K: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        elif code == sc.RET_K:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")


PROG = sc.build_filter(OWN_PID)
EPERM = sc.RET_ERRNO | errno.EPERM


def test_jumps_stay_inside_the_program():
    for index, (code, jt, jf, _) in enumerate(PROG):
        if code != sc.RET_K and code != sc.LD_W_ABS:
            assert index + 1 + max(jt, jf) < len(PROG)
    assert PROG[-1] == (sc.RET_K, 0, 0, sc.RET_ALLOW)


@pytest.mark.parametrize("name", sorted(sc.DENIED_SYSCALLS))
def test_denied_calls_get_eperm(name):
    assert evaluate(PROG, sc.DENIED_SYSCALLS[name]) == EPERM


def test_ordinary_calls_are_allowed():
    for nr in (0, 1, 3, 9, 60, 231, 257):  # read, write, close, mmap, exit, exit_group, openat
        assert evaluate(PROG, nr) == sc.RET_ALLOW


def test_clone3_is_enosys_and_clone_only_makes_threads():
    assert evaluate(PROG, sc.NR_CLONE3) == sc.RET_ERRNO | errno.ENOSYS
    thread_flags = 0x3D0F00  # what glibc passes for pthread_create
    assert evaluate(PROG, sc.NR_CLONE, (thread_flags,)) == sc.RET_ALLOW
    assert evaluate(PROG, sc.NR_CLONE, (0x01200011,)) == EPERM  # fork()
    assert evaluate(PROG, sc.NR_CLONE, (0x4111,)) == EPERM  # vfork-style spawn
    assert evaluate(PROG, sc.NR_CLONE, (thread_flags | 0x40000000,)) == EPERM  # thread + new netns


def test_signals_only_to_itself():
    assert evaluate(PROG, sc.NR_KILL, (OWN_PID, 9)) == sc.RET_ALLOW
    assert evaluate(PROG, sc.NR_TGKILL, (OWN_PID, 5, 9)) == sc.RET_ALLOW
    for target in (1, 3, 0, -1, OWN_PID + 2**32):
        assert evaluate(PROG, sc.NR_KILL, (target, 9)) == EPERM, target


def test_foreign_architecture_and_x32_are_killed():
    assert evaluate(PROG, 0, arch=0x40000003) == sc.RET_KILL_PROCESS  # i386
    assert evaluate(PROG, 0x40000000 + 1) == sc.RET_KILL_PROCESS


def test_landlock_masks_grow_with_the_abi_and_scratch_cannot_execute():
    assert sbx_landlock.handled_fs(1) == (1 << 13) - 1
    assert sbx_landlock.handled_fs(3) & sbx_landlock.TRUNCATE
    assert not sbx_landlock.handled_fs(1) & sbx_landlock.REFER
    assert not sbx_landlock.SCRATCH & (sbx_landlock.EXECUTE | sbx_landlock.REFER | sbx_landlock.MAKE_SYM)
    assert not sbx_landlock.READ_ONLY & sbx_landlock.EXECUTE


# --- the child's JSON encoder (it avoids importing json for start-up time) --------------------------

sbx_json = _child_module("sbx_json")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=150, deadline=None)
@given(JSON_VALUES)
def test_child_json_encoder_roundtrips_through_the_standard_decoder(value):
    text = sbx_json.dumps(value)
    assert json.loads(text) == value
    text.encode("utf-8")  # always encodable: lone surrogates are escaped


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: 2}, {1, 2}, b"bytes", object()])
def test_child_json_encoder_rejects_non_json(bad):
    with pytest.raises((TypeError, ValueError)):
        sbx_json.dumps({"x": [bad]})


def test_child_json_encoder_bounds_nesting():
    deep = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(ValueError, match="deeply"):
        sbx_json.dumps(deep)


# x86-64 numbers, written out independently of the filter's table (issue 17 items 4 and 7).
METADATA_SYSCALLS = {
    "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452,
    "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
    "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280,
    "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "getxattr": 191, "lgetxattr": 192,
    "fgetxattr": 193, "listxattr": 194, "llistxattr": 195, "flistxattr": 196, "removexattr": 197,
    "lremovexattr": 198, "fremovexattr": 199, "setxattrat": 463, "getxattrat": 464,
    "listxattrat": 465, "removexattrat": 466,
    "inotify_init": 253, "inotify_init1": 294, "inotify_add_watch": 254,
    "statmount": 457, "listmount": 458,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(METADATA_SYSCALLS))
def test_metadata_calls_landlock_cannot_see_are_denied(name):
    assert evaluate(PROG, METADATA_SYSCALLS[name]) == EPERM
