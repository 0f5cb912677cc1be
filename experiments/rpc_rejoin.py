"""Why chronomoe's remote experts do not use ``torch.distributed.rpc``: can a killed RPC server rejoin?

The trainer joins an RPC group in dynamic-membership mode (``init_rpc`` without ``world_size``), an
expert server joins it, answers one call and is killed with SIGKILL. A new server then tries to join,
first under the dead one's name and rank, then under a new name and rank, and the trainer calls it.
Prints what each step gave (on torch 2.13 CPU both rejoins fail; see docs/chronomoe.md).
Run: ``python -m experiments.rpc_rejoin``.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time

import torch
import torch.distributed.rpc as rpc


def options(port: int) -> rpc.TensorPipeRpcBackendOptions:
    return rpc.TensorPipeRpcBackendOptions(rpc_timeout=3, init_method=f"tcp://127.0.0.1:{port}")


def server(name: str, rank: int, port: int) -> None:
    try:
        rpc.init_rpc(name, rank=rank, rpc_backend_options=options(port))  # no world_size: dynamic
    except Exception as exc:  # noqa: BLE001 - the outcome is what this experiment reports
        print(
            f"{name} (rank {rank}) could not join: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
            flush=True,
        )
        os._exit(1)
    print(f"{name} (rank {rank}) joined", flush=True)
    while True:
        time.sleep(1)


def call(name: str) -> str:
    try:
        return f"call to {name}: {rpc.rpc_sync(name, torch.add, args=(torch.ones(2), 1), timeout=3).tolist()}"
    except Exception as exc:  # noqa: BLE001
        return f"call to {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


JOIN_S = 30


def first_line(process: subprocess.Popen[str], otherwise: str) -> str:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    ready = selector.select(timeout=JOIN_S)
    return process.stdout.readline().strip() if ready else otherwise  # type: ignore[union-attr]


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def start(name: str, rank: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "experiments.rpc_rejoin", name, str(rank), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    first = start("server", 1)
    rpc.init_rpc("trainer", rank=0, rpc_backend_options=options(port))
    print(first_line(first, "server (rank 1) did not join"), flush=True)
    print(call("server"), flush=True)
    first.send_signal(signal.SIGKILL)
    first.wait()
    print("server killed;", call("server"), flush=True)
    for name, rank in (("server", 1), ("server2", 2)):
        again = start(name, rank)
        print(first_line(again, f"{name} (rank {rank}) did not join within {JOIN_S} s"), flush=True)
        print(call(name), flush=True)
        again.kill()
    os._exit(0)  # rpc.shutdown would wait for the dead member


if __name__ == "__main__":
    if len(sys.argv) == 4:
        server(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
