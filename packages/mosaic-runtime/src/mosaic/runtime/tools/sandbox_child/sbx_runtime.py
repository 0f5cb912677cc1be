"""The restricted runtime: curated builtins, an import hook that admits only declared modules and
hands out views of their allow-listed attributes, captured and capped ``print`` output.

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


def module_view(module: types.ModuleType, attributes: list) -> types.SimpleNamespace:
    """A namespace holding only the allow-listed attributes of ``module`` (those this interpreter
    has): never the module itself, whose other globals lead to ``os``, pathlib or an evaluator."""
    view = types.SimpleNamespace()
    internal = module.__name__.startswith("_")  # a C-level dependency (see module_views)
    for attribute in attributes:
        if (attribute.startswith("_") and not internal) or not hasattr(module, attribute):
            continue
        value = getattr(module, attribute)
        if isinstance(value, types.ModuleType):
            continue
        setattr(view, attribute, value)
    return view


def make_import(module_attributes: dict):
    """``__import__`` for tools: only modules with an allow-list (sent by the parent for the
    tool's declared modules), each returned as a view of that list."""
    real_import = builtins.__import__
    views: dict = {}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0:
            raise ImportError("relative imports are not allowed in tools")
        if name not in module_attributes:
            raise ImportError(f"import of {name!r} is not allowed; declare it in the tool's capabilities")
        if name not in views:
            real_import(name)
            views[name] = module_view(sys.modules[name], module_attributes[name])
        return views[name]

    return guarded_import


def make_builtins(module_attributes: dict) -> dict:
    curated = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    curated["__import__"] = make_import(module_attributes)
    return curated


def execute(request: dict) -> dict:
    """Compile and run the tool's entry function; return the result envelope (JSON-ready)."""
    capture = CappedText(request["limits"]["output_bytes"])
    sys.stdout = sys.stderr = capture
    if request["language_layers"]:
        tool_builtins = make_builtins(request["module_attributes"])
    else:
        tool_builtins = builtins.__dict__
    namespace = {"__builtins__": tool_builtins, "__name__": "mosaic_tool"}
    try:
        exec(compile(request["source"], "<tool>", "exec"), namespace)
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
