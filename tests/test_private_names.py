"""No module of reelrt reaches into another's private names: neither `from reelrt.x import _name`
nor `obj._name` where `_name` is defined in some other module of reelrt and not in this one."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "cli", "export", "models", "quantize", "runtime", "serve")


def _modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path))
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, module names and attributes it assigns."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if _private(n)}


def violations(modules: dict[Path, ast.Module]) -> list[str]:
    defined = {path: _defined(tree) for path, tree in modules.items()}
    everywhere = set().union(*defined.values())
    found = []
    for path, tree in modules.items():
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reelrt"):
                found += [f"{where}:{node.lineno} imports {node.module}.{a.name}" for a in node.names if _private(a.name)]
            elif (isinstance(node, ast.Attribute) and _private(node.attr) and node.attr in everywhere
                  and node.attr not in defined[path]
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{where}:{node.lineno} uses .{node.attr}, private to another module")
    return found


def test_no_module_uses_another_modules_private_names():
    assert violations(_modules()) == []


def test_the_check_sees_a_private_call_across_modules():
    owner = ast.parse("class Generator:\n    def _encode(self, text):\n        return text\n")
    caller = ast.parse("from reelrt.runtime.x import _helper\n\ndef f(gen):\n    return gen._encode('hi')\n")
    found = violations({ROOT / "runtime" / "owner.py": owner, ROOT / "serve" / "caller.py": caller})
    assert found == ["serve/caller.py:1 imports reelrt.runtime.x._helper",
                     "serve/caller.py:4 uses ._encode, private to another module"]
