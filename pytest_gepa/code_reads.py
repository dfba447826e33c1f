"""What a callable reads beyond its own text, as stable text for the fingerprints that follow it.

A metric's source says ``EXACT(gold, pred)``, ``case_sensitive=CASE_SENSITIVE`` or calls a
closure's ``exact``; what it scores by is the value behind each name. :func:`callable_reads` lists
those values (module-level names the code reads, closure cells, defaults the source does not spell
out, a callable object's state, the user's own helpers in turn) as text without addresses or ids,
so a changed argument or table changes a fingerprint while an unchanged metric keeps it in every
run. Library code (the standard library, installed packages, pytest-gepa) counts by its name: its
version is provenance of its own.
"""

from __future__ import annotations

import ast
import functools
import gc
import hashlib
import inspect
import json
import os
import re
import sys
import sysconfig
import textwrap
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

# Frames of the standard library and installed packages; their code is counted by its name.
_LIBRARY_MARKERS = (*(f"{os.sep}{part}{os.sep}" for part in ("site-packages", "dist-packages")),
                    sysconfig.get_paths()["stdlib"] + os.sep, sysconfig.get_paths()["platstdlib"] + os.sep)
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")
MAX_DEPTH = 8  # how far into nested values and helpers a fingerprint looks
_PARSING = threading.RLock()


@contextmanager
def _no_collection() -> Iterator[None]:
    """Hold off the garbage collector while ``ast.parse`` builds a tree (``inspect.getsource`` of a
    class parses the class's whole module).

    Python 3.11 keeps the parse's recursion count once per interpreter. A collection inside the
    parse runs finalizers, and one that parses in turn (pytest formats the traceback of an exception
    raised in a finalizer, such as an unclosed socket's warning made an error, and 3.11's traceback
    parses) leaves the count off: the outer parse then fails with "SystemError: AST constructor
    recursion depth mismatch" (fixed in 3.12). The tree takes milliseconds; collection waits for it.
    """
    with _PARSING:  # one parse at a time re-enables the collector only once the last one is done
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if was_enabled:
                gc.enable()


def source_text(obj: Any) -> str:
    """``obj``'s source, or its qualified name where none is kept (a REPL, ``exec``, a C type)."""
    try:
        with _no_collection():
            return inspect.getsource(obj)
    except (OSError, TypeError):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def callable_reads(obj: Callable[..., Any]) -> list[list[str]]:
    """``[[kind, name, value], ...]``: what ``obj`` reads that its own source does not spell out."""
    walker = _Walker()
    if isinstance(obj, functools.partial):
        return [["partial", "func", walker.value(obj.func, 0)], ["partial", "args", walker.value(obj.args, 0)],
                ["partial", "keywords", walker.value(obj.keywords, 0)]]
    if inspect.ismethod(obj):
        func = obj.__func__
        own = walker.function_reads(func, 0) if isinstance(func, types.FunctionType) else []
        return [*own, ["self", "", walker.value(obj.__self__, 0)]]
    if inspect.isfunction(obj):
        return walker.function_reads(obj, 0)
    reads = walker.class_reads(type(obj), 0)
    state = getattr(obj, "__dict__", None)
    if state:
        reads.append(["state", "", walker.value(dict(state), 0)])
    return reads


def _is_library(obj: Any) -> bool:
    name = getattr(obj, "__module__", None)
    if not isinstance(name, str) or name == "builtins" or name.split(".")[0] == "pytest_gepa":
        return True
    file = getattr(sys.modules.get(name), "__file__", None)
    return isinstance(file, str) and any(marker in file for marker in _LIBRARY_MARKERS)


def _named(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _global_names(code: types.CodeType) -> set[str]:
    """The names ``code`` (and the functions, lambdas and comprehensions inside it) looks up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _spelled_defaults(fn: types.FunctionType) -> set[str]:
    """Parameters whose default is a literal in the source (``trace=None``): the text holds them."""
    try:
        with _no_collection():
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return set()
    for node in ast.walk(tree):
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn.__name__) or (
                isinstance(node, ast.Lambda) and fn.__name__ == "<lambda>"):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True),
                     *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
            return {arg.arg for arg, default in pairs if default is not None and _is_literal(default)}
    return set()


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


class _Walker:
    """One walk over what a callable reads; ``_open`` holds what is being described, so a metric
    that calls itself or a table that holds itself ends the walk instead of recursing."""

    def __init__(self) -> None:
        self._open: set[int] = set()

    def function_reads(self, fn: types.FunctionType, depth: int) -> list[list[str]]:
        code = fn.__code__
        reads: list[list[str]] = []
        spelled = _spelled_defaults(fn)
        given = fn.__defaults__ or ()
        positional = code.co_varnames[:code.co_argcount][code.co_argcount - len(given):]
        defaults = [*zip(positional, given, strict=True), *sorted((fn.__kwdefaults__ or {}).items())]
        self._open.add(id(fn))
        try:
            reads += [["default", name, self.value(value, depth)] for name, value in defaults if name not in spelled]
            for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
                try:
                    reads.append(["closure", name, self.value(cell.cell_contents, depth)])
                except ValueError:  # a cell not yet filled
                    reads.append(["closure", name, "<empty>"])
            for name in sorted(_global_names(code)):
                if name in fn.__globals__ and not isinstance(fn.__globals__[name], types.ModuleType):
                    reads.append(["global", name, self.value(fn.__globals__[name], depth)])
        finally:
            self._open.discard(id(fn))
        return reads

    def class_reads(self, cls: type, depth: int) -> list[list[str]]:
        """What the methods of ``cls`` (and of its bases of the user's own) read."""
        reads: list[list[str]] = []
        for klass in cls.__mro__:
            if _is_library(klass):
                continue
            for name, attr in sorted(vars(klass).items()):
                fn = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
                if inspect.isfunction(fn):
                    for kind, read, value in self.function_reads(fn, depth):
                        reads.append([kind, f"{klass.__qualname__}.{name}:{read}", value])
        return reads

    def value(self, obj: Any, depth: int) -> str:
        """``obj`` as stable text: equal values give equal text in any run."""
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            return repr(obj)
        if isinstance(obj, types.ModuleType):
            return f"module {obj.__name__}"
        own = self._own_fingerprint(obj)
        if own is not None:
            return f"fingerprint {own}"
        if depth >= MAX_DEPTH or id(obj) in self._open:
            return f"<{type(obj).__qualname__} at depth {depth}>" if depth >= MAX_DEPTH else "<recursive>"
        self._open.add(id(obj))
        try:
            return self._compound(obj, depth + 1)
        finally:
            self._open.discard(id(obj))

    def _compound(self, obj: Any, depth: int) -> str:
        if isinstance(obj, Mapping):
            items = [[self.value(key, depth), self.value(item, depth)] for key, item in obj.items()]
            return f"{type(obj).__qualname__} {json.dumps(items)}"
        if isinstance(obj, (list, tuple)):
            return f"{type(obj).__qualname__} {json.dumps([self.value(item, depth) for item in obj])}"
        if isinstance(obj, (set, frozenset)):
            return f"{type(obj).__qualname__} {json.dumps(sorted(self.value(item, depth) for item in obj))}"
        if isinstance(obj, functools.partial):
            return f"partial {json.dumps(callable_reads(obj))}"
        if inspect.ismethod(obj):
            return f"method {self.value(obj.__func__, depth)} of {self.value(obj.__self__, depth)}"
        if inspect.isfunction(obj) and not _is_library(obj):
            return f"function {_hash(source_text(obj), self.function_reads(obj, depth))}"
        if isinstance(obj, type) and not _is_library(obj):
            return f"class {_hash(source_text(obj), self.class_reads(obj, depth))}"
        if inspect.isroutine(obj) or isinstance(obj, type):
            return f"library {_named(obj)}"
        if _is_library(type(obj)) or not hasattr(obj, "__dict__"):
            try:
                shown = repr(obj)
            except Exception:  # a repr that fails says nothing stable: the type must do
                shown = ""
            return f"{_named(type(obj))} {_ADDRESS.sub('', shown)}"
        return f"object {self.value(type(obj), depth)} {self.value(dict(vars(obj)), depth)}"

    @staticmethod
    def _own_fingerprint(obj: Any) -> str | None:
        """The fingerprint a metric of pytest-gepa's (or a rubric) carries, which names its arguments."""
        if isinstance(obj, type):
            return None
        try:
            own = getattr(obj, "fingerprint", None)
        except Exception:  # an object whose attribute lookup fails has no fingerprint of its own
            return None
        return own if isinstance(own, str) else None


def _hash(text: str, reads: list[list[str]]) -> str:
    payload = text if not reads else text + "\0" + json.dumps(reads)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def fingerprint(obj: Callable[..., Any]) -> str:
    """A content hash of a callable: its source (its class's, for a callable object) and what it reads.
    A callable that reads nothing its source does not spell out hashes as its source alone."""
    target = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj)
    return _hash(source_text(target), callable_reads(obj))
