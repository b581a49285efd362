"""Names a package re-exports, imported on first use (PEP 562), so that importing a package, or the command line's
`--help`, does not pay for torch, transformers and scipy before something needs them.

A package lists its names once, as imports under `if TYPE_CHECKING:` (what type checkers and editors read), and
serves them with `__getattr__, __dir__ = lazy_exports(__name__)`, which reads that block from the package's source.
"""
from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def type_checking_imports(source: str) -> dict[str, str]:
    """Each name imported under `if TYPE_CHECKING:` in `source`, with the module it comes from."""
    where: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    where.update({alias.asname or alias.name: statement.module for alias in statement.names})
    return where


def lazy_exports(package: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's `__getattr__` and `__dir__`, serving the names of its `if TYPE_CHECKING:` imports on first use."""
    module = importlib.import_module(package)  # the package being initialised: already in sys.modules
    where = type_checking_imports(Path(str(module.__file__)).read_text(encoding="utf-8"))
    namespace = module.__dict__

    def getattr_(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value  # later lookups find it without coming here
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *where})

    return getattr_, dir_
