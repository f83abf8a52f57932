"""Lint gate: every public function and method is documented and fully annotated, and ruff passes.

Rule (checked by an AST walk, without importing anything):

- the modules are every ``.py`` under prep/, models/, evaluation/, pretrained/, splits/, bench/ and
  scene/, plus train.py, evaluate.py and predict.py (never tests/ nor a virtual environment);
- public = a ``def`` whose name does not start with ``_``, at module level (also inside module-level
  ``if``/``try``/``with`` blocks) or in a public class (name not starting with ``_``, nested public
  classes included). Dunder methods (``__init__``, ``__call__``, ...) are not public by this rule:
  the class docstring documents construction. Functions nested in functions are not public API;
- a public function needs a non-empty docstring (except property setters/deleters and
  ``@overload`` stubs, documented by their getter/implementation), an annotation on every
  parameter except a method's first (``self``/``cls``; none is skipped for ``@staticmethod``), and a
  return annotation;
- ``*args`` and ``**kwargs`` may stay unannotated: in this code base they forward arbitrary
  arguments (Keras layer/model keyword arguments, absl argv), where ``Any`` would add nothing.
"""
from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("prep", "models", "evaluation", "pretrained", "splits", "bench", "scene")
TOP_LEVEL = ("train.py", "evaluate.py", "predict.py")
SKIP_PARTS = {"tests", ".venv", "venv", "__pycache__", "build", ".eggs"}



def project_modules() -> list[Path]:
    """Every module the rule covers, as paths relative to the repo root."""
    files = [ROOT / name for name in TOP_LEVEL if (ROOT / name).is_file()]
    for pkg in PACKAGES:
        files.extend(p for p in (ROOT / pkg).rglob("*.py") if not SKIP_PARTS.intersection(p.relative_to(ROOT).parts))
    return sorted(p.relative_to(ROOT) for p in files)


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for dec in node.decorator_list:
        if isinstance(dec, ast.Call):
            dec = dec.func
        names.add(ast.unparse(dec))
    return names


def _problems(node: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> list[str]:
    """What ``node`` lacks: 'docstring', 'annotation of x', 'return annotation'."""
    decorators = _decorator_names(node)
    is_accessor = any(d.endswith((".setter", ".deleter")) for d in decorators)
    is_overload = bool(decorators & {"overload", "typing.overload"})
    problems = []
    if not (is_accessor or is_overload) and not (ast.get_docstring(node) or "").strip():
        problems.append("docstring")
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    if is_method and "staticmethod" not in decorators and positional:
        positional = positional[1:]  # self / cls
    for arg in [*positional, *args.kwonlyargs]:
        if arg.annotation is None:
            problems.append(f"annotation of {arg.arg}")
    if node.returns is None:
        problems.append("return annotation")
    return problems


def _walk(body: list[ast.stmt], in_class: bool, path: Path, out: list[str]) -> None:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("_"):
                problems = _problems(node, is_method=in_class)
                if problems:
                    out.append(f"{path.as_posix()}:{node.lineno} {node.name}: missing {', '.join(problems)}")
        elif isinstance(node, ast.ClassDef):
            if not node.name.startswith("_"):
                _walk(node.body, True, path, out)
        elif isinstance(node, ast.If | ast.With | ast.AsyncWith):
            _walk(node.body, in_class, path, out)
            _walk(getattr(node, "orelse", []), in_class, path, out)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                _walk(block, in_class, path, out)


def offenders(path: Path, source: str | None = None) -> list[str]:
    """``file:line name: missing ...`` for every public function of ``path`` (or of ``source``) that breaks the rule."""
    text = (ROOT / path).read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    out: list[str] = []
    _walk(tree.body, False, path, out)
    return out


def test_checker_finds_offenders():
    source = """
import typing

def good(a: int, *args, b: str = "", **kwargs) -> None:
    \"\"\"Documented.\"\"\"

def no_doc(a: int) -> int:
    return a

def no_hints(a, b: int):
    \"\"\"Documented.\"\"\"

def _private(a):
    pass

class Public:
    def method(self, x) -> None:
        \"\"\"Documented.\"\"\"

    @classmethod
    def make(cls) -> "Public":
        \"\"\"Documented.\"\"\"

    @staticmethod
    def helper(x: int) -> int:
        \"\"\"Documented.\"\"\"

    @property
    def value(self) -> int:
        \"\"\"Documented.\"\"\"

    @value.setter
    def value(self, v: int) -> None:
        pass

    def __init__(self, anything):
        pass

class _Private:
    def method(self, x):
        pass

if typing.TYPE_CHECKING:
    def hidden(x) -> None:
        \"\"\"Documented.\"\"\"
"""
    found = offenders(Path("pkg/mod.py"), source)
    assert found == [
        "pkg/mod.py:7 no_doc: missing docstring",
        "pkg/mod.py:10 no_hints: missing annotation of a, return annotation",
        "pkg/mod.py:17 method: missing annotation of x",
        "pkg/mod.py:44 hidden: missing annotation of x",
    ], found


def test_modules_found():
    modules = {p.as_posix() for p in project_modules()}
    assert {"models/registry.py", "evaluation/metrics.py", "prep/tiff.py", "train.py", "evaluate.py"} <= modules
    assert not any(m.startswith(("tests/", ".venv/")) for m in modules)


def test_public_functions_documented_and_annotated():
    found = [line for path in project_modules() for line in offenders(path)]
    assert not found, (
        f"{len(found)} public function(s) without a docstring or full type hints "
        "(see tests/test_lint.py for the rule):\n" + "\n".join(found)
    )


def _ruff_command() -> list[str] | None:
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    exe = shutil.which("ruff")
    return [exe] if exe else None


def test_ruff_check_passes():
    cmd = _ruff_command()
    if cmd is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([*cmd, "check", "--output-format", "concise", "--no-cache", "."],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff check . failed:\n{proc.stdout}{proc.stderr}"
