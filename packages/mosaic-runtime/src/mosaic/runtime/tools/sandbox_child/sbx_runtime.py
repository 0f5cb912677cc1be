"""The restricted runtime: curated builtins, an import hook that admits only declared modules and
hands out read-only views of them, captured and capped ``print`` output.

This is a language-level layer and therefore *not* a security boundary on its own (the OS layers
are); it removes the easy paths so that a tool that tries them fails loudly and early.
Standard library only (runs in the sandbox child).
"""

from __future__ import annotations

import builtins
import sys
import types

import sbx_json

SAFE_BUILTINS = (
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "oct",
    "ord",
    "pow",
    "print",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "Exception",
    "ImportError",
    "IndexError",
    "KeyError",
    "LookupError",
    "MemoryError",
    "NameError",
    "OverflowError",
    "RecursionError",
    "RuntimeError",
    "StopIteration",
    "TypeError",
    "UnicodeError",
    "ValueError",
    "ZeroDivisionError",
)

# Callables in otherwise safe modules that perform attribute access by string.
DENIED_MODULE_ATTRIBUTES = {"operator": {"attrgetter", "methodcaller"}}


class CappedText:
    """A write-only text sink that keeps at most ``limit`` characters and remembers overflow."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.overflowed = False

    def write(self, text: str) -> int:
        text = str(text)
        room = self.limit - self.size
        if len(text) > room:
            self.overflowed = True
            text = text[: max(room, 0)]
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def flush(self) -> None:
        return None

    def getvalue(self) -> str:
        return "".join(self.parts)


def module_allowed(name: str, allowed: frozenset) -> bool:
    if any(part.startswith("_") or not part for part in name.split(".")):
        return False
    return any(name == root or name.startswith(root + ".") for root in allowed)


def module_view(
    module: types.ModuleType, allowed: frozenset, seen: dict | None = None
) -> types.SimpleNamespace:
    """A read-only-ish namespace of a module's public, non-module attributes (allowed submodules
    become nested views), so that ``typing.sys`` or ``json.decoder.re`` lead nowhere."""
    seen = {} if seen is None else seen
    if module.__name__ in seen:
        return seen[module.__name__]
    view = types.SimpleNamespace()
    seen[module.__name__] = view
    denied = DENIED_MODULE_ATTRIBUTES.get(module.__name__, set())
    for attribute, value in list(vars(module).items()):
        if attribute.startswith("_") or attribute in denied:
            continue
        if isinstance(value, types.ModuleType):
            if not module_allowed(value.__name__, allowed):
                continue
            value = module_view(value, allowed, seen)
        setattr(view, attribute, value)
    return view


def make_import(allowed: frozenset):
    real_import = builtins.__import__

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0:
            raise ImportError("relative imports are not allowed in tools")
        if not module_allowed(name, allowed):
            raise ImportError(f"import of {name!r} is not allowed; declare it in the tool's capabilities")
        real_import(name)
        if fromlist:
            return module_view(sys.modules[name], allowed)
        return module_view(sys.modules[name.partition(".")[0]], allowed)

    return guarded_import


def make_builtins(allowed: frozenset) -> dict:
    curated = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    curated["__import__"] = make_import(allowed)
    return curated


def execute(request: dict) -> dict:
    """Compile and run the tool's entry function; return the result envelope (JSON-ready)."""
    capture = CappedText(request["limits"]["output_bytes"])
    sys.stdout = sys.stderr = capture
    if request["language_layers"]:
        tool_builtins = make_builtins(frozenset(request["allowed_modules"]))
    else:
        tool_builtins = builtins.__dict__
    namespace = {"__builtins__": tool_builtins, "__name__": "mosaic_tool"}
    try:
        exec(compile(request["source"], "<tool>", "exec"), namespace)  # noqa: S102 - running it is the point
        entry = namespace.get(request["entry"])
        if not callable(entry):
            raise NameError(f"the tool defines no function {request['entry']!r}")
        value = entry(**request["params"])
        sbx_json.dumps(value)
    except BaseException as exc:  # noqa: BLE001 - the tool's failure is data for the parent, whatever it is
        try:
            message = str(exc)[:2000]
        except BaseException:  # noqa: BLE001 - a hostile __str__ must not hide the failure
            message = "<unprintable exception>"
        return {
            "ok": False,
            "error": {"kind": "tool", "type": type(exc).__name__, "message": message},
            "stdout": capture.getvalue(),
            "stdout_truncated": capture.overflowed,
        }
    return {"ok": True, "value": value, "stdout": capture.getvalue(), "stdout_truncated": capture.overflowed}
