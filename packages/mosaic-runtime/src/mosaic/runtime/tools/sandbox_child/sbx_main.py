"""Entry point of the sandbox child: read the request, confine, run the tool, write framed results.

Started by the parent as ``python3 -I -S -c <stub>`` with an empty environment, stdin/stdout/
stderr as pipes and no other descriptor. The request arrives on stdin (marshal, from the trusted
parent); on stdout go a status frame (the verified layers, or the one that is unavailable) before
any tool code exists, then one result frame, each a JSON document on its own line. Nothing of the
tool runs before every layer is in place.
"""

from __future__ import annotations

import marshal
import os
import sys

import sbx_confine
import sbx_json
import sbx_runtime

# Stdlib modules that declared modules import lazily, inside functions. They are loaded with the
# declared modules before any confinement (see sbx_confine.confine): the unprivileged user may be
# unable to read the standard library, and the minimal root lacks the shared libraries extension
# modules load. Loading them does not make them importable by the tool.
LAZY_DEPENDENCIES = {
    "collections": ("heapq", "copy"),
    "datetime": ("_strptime",),
    "time": ("_strptime",),
    "statistics": ("heapq",),
    "json": ("json.decoder", "json.encoder", "json.scanner"),
}


def _emit(envelope: dict) -> None:
    """Write one frame: a JSON document on one line (the encoder escapes every newline)."""
    data = sbx_json.dumps(envelope).encode("utf-8") + b"\n"
    view = memoryview(data)
    while view:
        written = os.write(1, view)
        view = view[written:]


def _preload(allowed_modules: list) -> None:
    names = list(allowed_modules)
    for module_name in allowed_modules:
        names += LAZY_DEPENDENCIES.get(module_name.partition(".")[0], ())
    for module_name in names:
        try:
            __import__(module_name)
        except Exception:  # noqa: BLE001 - the tool's own import reports it, inside the sandbox
            continue


def main() -> None:
    request = marshal.loads(sys.stdin.buffer.read())  # from the trusted parent; marshal needs no import
    os.close(0)
    sys.path[:] = [p for p in sys.path if p != request["child_dir"]]
    layers: dict = {
        "fresh_interpreter": {
            "active": sys.flags.isolated == 1 and sys.flags.no_site == 1,
            "detail": "python -I -S, empty environment, only stdio pipes",
        }
    }
    try:
        sbx_confine.enter_namespaces(request, layers)
        sbx_confine.confine(request, layers, lambda: _preload(request["allowed_modules"]))
    except sbx_confine.LayerUnavailable as exc:
        _emit({"frame": "unavailable", "layer": exc.layer, "message": str(exc), "layers": layers})
        os._exit(0)
    layers["restricted_runtime"] = {
        "active": bool(request["language_layers"]),
        "detail": "curated builtins, declared imports only",
    }
    # The status frame goes out before any tool code exists, so the tool cannot forge it.
    _emit({"frame": "confined", "layers": layers})
    envelope = sbx_runtime.execute(request)
    sys.stdout = sys.__stdout__
    _emit({"frame": "result", **envelope})
    os._exit(0)
