"""The shape the architecture promises: small modules, short functions, few parameters.

A limit that is only written down drifts; this test holds every module of the package to
it, so a new module is covered without anyone remembering to list it. ``PUBLIC_OPTIONS``
names the public API methods whose keyword-only options are their documented interface.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "reminderd"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 40
MAX_PARAMETERS = 5
MODULES = sorted(PACKAGE.rglob("*.py"))
PUBLIC_OPTIONS = {"reminderd/api/reminders.py schedule"}

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _functions(path: Path) -> list[Function]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, Function)]


def _parameters(func: Function) -> list[str]:
    args = func.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    return [name for name in names if name not in {"self", "cls"}]


def _violations() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in MODULES:
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            found[_name(path)] = f"{lines} lines"
        for func in _functions(path):
            where = f"{_name(path)} {func.name}"
            length = (func.end_lineno or func.lineno) - func.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found[where] = f"{length} lines"
            params = _parameters(func)
            if len(params) > MAX_PARAMETERS and where not in PUBLIC_OPTIONS:
                found[where] = f"{len(params)} parameters: {', '.join(params)}"
    return found


def test_modules_and_functions_stay_small() -> None:
    """No module over 300 lines, no function over 40 lines or over 5 parameters."""
    assert _violations() == {}
