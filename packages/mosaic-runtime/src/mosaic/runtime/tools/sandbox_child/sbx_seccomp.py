"""A seccomp-BPF system-call filter, assembled by hand and installed with prctl (x86-64 only).

Runs inside the sandbox child (standard library only). Default-allow with a deny list: the
interpreter needs hundreds of ordinary calls, while the dangerous ones are few and enumerable.
Every new process is refused (fork/vfork, clone without CLONE_THREAD, clone3 -> ENOSYS so that
libc falls back to clone where the flags can be inspected), as are exec, sockets, ptrace, signals
to anything but the process itself, namespace/mount/module/key/BPF/io_uring calls, and credential
changes, and (since Landlock cannot see them) metadata calls: xattrs, chmod/chown, utime, inotify,
listmount/statmount. A foreign architecture or the x32 ABI kills the process.
"""

from __future__ import annotations

import ctypes
import errno
import os

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

# offsets in struct seccomp_data
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16
OFFSET_ARG0_HIGH = 20

CLONE_THREAD = 0x00010000
CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

# x86-64 system call numbers
NR_CLONE, NR_CLONE3, NR_KILL, NR_TGKILL = 56, 435, 62, 234
DENIED_SYSCALLS: dict[str, int] = {
    "socket": 41,
    "connect": 42,
    "accept": 43,
    "bind": 49,
    "listen": 50,
    "accept4": 288,
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "tkill": 200,
    "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297,
    "pidfd_open": 434,
    "pidfd_send_signal": 424,
    "pidfd_getfd": 438,
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "execveat": 322,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "unshare": 272,
    "setns": 308,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "acct": 163,
    "quotactl": 179,
    "syslog": 103,
    "settimeofday": 164,
    "clock_settime": 227,
    "clock_adjtime": 305,
    "adjtimex": 159,
    "iopl": 172,
    "ioperm": 173,
    "mknod": 133,
    "mknodat": 259,
    "personality": 135,
    "setuid": 105,
    "setgid": 106,
    "setreuid": 113,
    "setregid": 114,
    "setresuid": 117,
    "setresgid": 119,
    "setgroups": 116,
    "setfsuid": 122,
    "setfsgid": 123,
    "capset": 126,
    "setsid": 112,
    "setpgid": 109,
    "sethostname": 170,
    "setdomainname": 171,
    "vhangup": 153,
    "lookup_dcookie": 212,
    "uselib": 134,
    "move_pages": 279,
    "migrate_pages": 256,
    "fanotify_init": 300,
    "fanotify_mark": 301,
    "process_madvise": 440,
    # Metadata writes and reads that Landlock does not mediate and seccomp cannot tell apart by
    # path: refused everywhere (a tool has no use for them, even in its scratch directory).
    "chmod": 90,
    "fchmod": 91,
    "fchmodat": 268,
    "fchmodat2": 452,
    "chown": 92,
    "fchown": 93,
    "lchown": 94,
    "fchownat": 260,
    "utime": 132,
    "utimes": 235,
    "futimesat": 261,
    "utimensat": 280,
    "setxattr": 188,
    "lsetxattr": 189,
    "fsetxattr": 190,
    "getxattr": 191,
    "lgetxattr": 192,
    "fgetxattr": 193,
    "listxattr": 194,
    "llistxattr": 195,
    "flistxattr": 196,
    "removexattr": 197,
    "lremovexattr": 198,
    "fremovexattr": 199,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    # Watching names in directories the tool can otherwise only stat, and the mount table.
    "inotify_init": 253,
    "inotify_init1": 294,
    "inotify_add_watch": 254,
    "statmount": 457,
    "listmount": 458,
    "open_tree_attr": 467,
}


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def build_filter(own_pid: int) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions. ``own_pid`` is the only kill() target allowed."""
    eperm = RET_ERRNO | errno.EPERM
    prog = [
        _ins(LD_W_ABS, OFFSET_ARCH),
        _ins(JEQ_K, AUDIT_ARCH_X86_64, jt=1),
        _ins(RET_K, RET_KILL_PROCESS),
        _ins(LD_W_ABS, OFFSET_NR),
        _ins(JGE_K, X32_SYSCALL_BIT, jf=1),
        _ins(RET_K, RET_KILL_PROCESS),
        _ins(JEQ_K, NR_CLONE3, jf=1),
        _ins(RET_K, RET_ERRNO | errno.ENOSYS),
    ]
    for number in sorted(DENIED_SYSCALLS.values()):
        prog += [_ins(JEQ_K, number, jf=1), _ins(RET_K, eperm)]
    # clone: threads only, and never with namespace flags
    prog += [
        _ins(JEQ_K, NR_CLONE, jf=6),
        _ins(LD_W_ABS, OFFSET_ARG0_LOW),
        _ins(JSET_K, CLONE_NAMESPACE_FLAGS, jf=1),
        _ins(RET_K, eperm),
        _ins(JSET_K, CLONE_THREAD, jf=1),
        _ins(RET_K, RET_ALLOW),
        _ins(RET_K, eperm),
    ]
    # kill(pid, sig) and tgkill(tgid, tid, sig): only the process itself
    for number in (NR_KILL, NR_TGKILL):
        prog += [
            _ins(JEQ_K, number, jf=6),
            _ins(LD_W_ABS, OFFSET_ARG0_HIGH),
            _ins(JEQ_K, 0, jf=3),
            _ins(LD_W_ABS, OFFSET_ARG0_LOW),
            _ins(JEQ_K, own_pid, jf=1),
            _ins(RET_K, RET_ALLOW),
            _ins(RET_K, eperm),
        ]
    prog.append(_ins(RET_K, RET_ALLOW))
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


PR_SET_SECCOMP = 22
PR_GET_SECCOMP = 21
SECCOMP_MODE_FILTER = 2


def seccomp_supported() -> str | None:
    """None if a filter can be installed here, else why not."""
    machine = os.uname().machine
    if machine != "x86_64":
        return f"the seccomp filter is written for x86_64, this machine is {machine}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
        return f"prctl(PR_GET_SECCOMP) failed: {errno.errorcode.get(ctypes.get_errno(), '?')}"
    return None


def install_filter(own_pid: int) -> int:
    """Install the filter on the calling thread (needs no_new_privs); returns its length."""
    problem = seccomp_supported()
    if problem:
        raise OSError(errno.ENOSYS, problem)
    prog = build_filter(own_pid)
    array = (_SockFilter * len(prog))(*[_SockFilter(code, jt, jf, k) for code, jt, jf, k in prog])
    fprog = _SockFprog(len(prog), ctypes.cast(array, ctypes.POINTER(_SockFilter)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP) failed: {errno.errorcode.get(err, '?')}")
    return len(prog)
