"""The static AST gate: a default-deny allow-list over tool source, returning every problem.

Only plain functions, expressions, loops, comprehensions, exceptions and imports of declared
modules pass. Classes, decorators, ``match``, ``global``, async code, dunder names, underscore
attributes, frame/traceback/code attributes and string-driven attribute access (``format``,
``vformat``, ``getattr``) are refused, because each is a known path from a harmless object to
``os`` (introspection walks, ``str.format`` field lookups, class patterns reading dunders).
Like the restricted runtime this is defence in depth, not the boundary.
"""

from __future__ import annotations

import ast
import re

from mosaic.runtime.tools.module_views import view_problem

MAX_SOURCE_CHARS = 64_000
MAX_NODES = 20_000

ALLOWED_NODES: tuple[type, ...] = (
    ast.Module,
    ast.Expr,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.For,
    ast.While,
    ast.If,
    ast.With,
    ast.withitem,
    ast.Break,
    ast.Continue,
    ast.Pass,
    ast.Return,
    ast.FunctionDef,
    ast.arguments,
    ast.arg,
    ast.Raise,
    ast.Try,
    ast.ExceptHandler,
    ast.Assert,
    ast.Delete,
    ast.Import,
    ast.ImportFrom,
    ast.alias,
    ast.Lambda,
    ast.IfExp,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Call,
    ast.keyword,
    ast.Dict,
    ast.Set,
    ast.List,
    ast.Tuple,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.comprehension,
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Starred,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.NamedExpr,
    ast.Yield,
    ast.YieldFrom,
    ast.expr_context,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
    ast.boolop,
)

DENIED_NAMES = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "globals",
        "locals",
        "vars",
        "dir",
        "breakpoint",
        "input",
        "help",
        "memoryview",
        "type",
        "object",
        "super",
        "classmethod",
        "staticmethod",
        "property",
        "exit",
        "quit",
        "id",
        "copyright",
        "credits",
        "license",
    }
)

DENIED_ATTRIBUTES = frozenset(
    {
        # frames, tracebacks, code and generator internals
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "ag_await",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "f_trace",
        "tb_frame",
        "tb_next",
        "co_code",
        "co_consts",
        "func_globals",
        "func_code",
        "mro",
        # string-driven attribute access
        "format",
        "format_map",
        "vformat",
        "get_field",
        "get_value",
        "format_field",
        "attrgetter",
        "methodcaller",
        # copy or read attributes named by strings (functools.update_wrapper(..., updated=("__globals__",)))
        "update_wrapper",
        "wraps",
        "singledispatch",
        "total_ordering",
    }
)

# Names that lead to the interpreter's internals. Refused as names, and as string constants (or a
# dotted component of one), because a string can reach an attribute without an attribute node:
# ``update_wrapper(f, g, updated=("__globals__",))``, ``getattr``-like library helpers.
INTERNAL_NAMES = frozenset(
    {
        "os",
        "sys",
        "builtins",
        "posix",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "f_trace",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "tb_frame",
        "tb_next",
        "co_code",
        "co_consts",
        "func_globals",
        "func_code",
    }
)

NEVER_IMPORTABLE = frozenset(
    {
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "ctypes",
        "importlib",
        "imp",
        "pickle",
        "copyreg",
        "marshal",
        "shelve",
        "dbm",
        "socket",
        "ssl",
        "select",
        "selectors",
        "signal",
        "resource",
        "pty",
        "tty",
        "termios",
        "fcntl",
        "mmap",
        "multiprocessing",
        "concurrent",
        "asyncio",
        "threading",
        "gc",
        "inspect",
        "code",
        "codeop",
        "builtins",
        "runpy",
        "pkgutil",
        "zipimport",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "glob",
        "urllib",
        "http",
        "ftplib",
        "smtplib",
        "telnetlib",
        "webbrowser",
        "sqlite3",
        "typing",
        "dataclasses",
        "ast",
        "types",
        "weakref",
        "traceback",
        "linecache",
        "platform",
        "sysconfig",
        "site",
        "pdb",
        "faulthandler",
        "tracemalloc",
        "ensurepip",
        "venv",
        "zipfile",
        "tarfile",
    }
)


def import_problem(name: str) -> str | None:
    """Why ``name`` may never be declared as an allowed import, or None."""
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return f"{name!r} is not a module name"
    if any(part.startswith("_") for part in parts):
        return f"{name!r}: private modules cannot be imported by tools"
    if parts[0] in NEVER_IMPORTABLE:
        return f"{name!r} reaches the operating system or the interpreter's internals and is never allowed"
    return view_problem(name)


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def internal_name(name: str) -> bool:
    """True for a name that leads to interpreter internals: any underscore name but ``_`` itself
    (``__globals__``, ``_os``), and ``INTERNAL_NAMES``."""
    return (name.startswith("_") and name != "_") or name in INTERNAL_NAMES


def _string_problem(value: str | bytes) -> str | None:
    """A string constant that names internals, whole or as a dotted component (``"a.__class__"``)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    for part in text.strip().split("."):
        if _WORD.fullmatch(part) and internal_name(part):
            return f"string {value!r} names the interpreter internal {part!r}"
    return None


def _imported_allowed(name: str, allowed: frozenset[str]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in allowed)


def check_source(source: str, allowed_imports: frozenset[str], *, entry: str = "run") -> list[str]:
    """Every reason ``source`` may not run as a tool; an empty list means it passes the gate."""
    if len(source) > MAX_SOURCE_CHARS:
        return [f"source has {len(source)} characters; the limit is {MAX_SOURCE_CHARS}"]
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as exc:
        return [f"line {exc.lineno}: syntax error: {exc.msg}"]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [f"source cannot be parsed: {type(exc).__name__}"]
    problems: list[str] = []
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        return [f"source has {len(nodes)} syntax nodes; the limit is {MAX_NODES}"]
    for node in nodes:
        line = getattr(node, "lineno", 0)
        where = f"line {line}: " if line else ""
        if not isinstance(node, ALLOWED_NODES):
            problems.append(f"{where}{type(node).__name__} is not allowed in tools")
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            problem = _string_problem(node.value)
            if problem:
                problems.append(f"{where}{problem}")
        elif isinstance(node, ast.Name) and (internal_name(node.id) or node.id in DENIED_NAMES):
            problems.append(f"{where}name {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute) and (
            node.attr.startswith("_") or node.attr in DENIED_ATTRIBUTES
        ):
            problems.append(f"{where}attribute {node.attr!r} is not allowed")
        elif isinstance(node, ast.FunctionDef) and node.decorator_list:
            problems.append(f"{where}decorators are not allowed (function {node.name!r})")
        elif isinstance(node, (ast.FunctionDef, ast.arg)):
            name = node.name if isinstance(node, ast.FunctionDef) else node.arg
            if internal_name(name) or name in DENIED_NAMES:
                problems.append(f"{where}name {name!r} is not allowed")
        elif isinstance(node, ast.ExceptHandler) and node.name and internal_name(node.name):
            problems.append(f"{where}name {node.name!r} is not allowed")
        elif isinstance(node, ast.keyword) and node.arg and node.arg.startswith("__"):
            problems.append(f"{where}keyword {node.arg!r} is not allowed")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                problems += _import_problems(alias.name, allowed_imports, where)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                problems.append(f"{where}relative imports are not allowed")
            else:
                problems += _import_problems(node.module or "", allowed_imports, where)
            for alias in node.names:
                if alias.name == "*" or internal_name(alias.name) or alias.name in DENIED_ATTRIBUTES:
                    problems.append(f"{where}'from ... import {alias.name}' is not allowed")
        if isinstance(node, ast.alias) and node.asname and internal_name(node.asname):
            problems.append(f"{where}name {node.asname!r} is not allowed")
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if entry not in defined:
        problems.append(f"the tool must define a top-level function {entry!r}")
    return problems


def _import_problems(name: str, allowed: frozenset[str], where: str) -> list[str]:
    problem = import_problem(name)
    if problem:
        return [f"{where}{problem}"]
    if not _imported_allowed(name, allowed):
        return [f"{where}import of {name!r} is not declared in the tool's allowed imports"]
    return []
