"""The checked-in type stub of the extension module (python/generals_rl/_core.pyi)
names exactly what _core defines: a binding added, renamed or removed without the
stub being regenerated fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import generals_rl
from generals_rl import _core

STUB = Path(generals_rl.__file__).with_name("_core.pyi")


def public(names) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def defined_names(body: list[ast.stmt]) -> set[str]:
    """Names a stub's statements define: classes, functions and annotated or
    assigned names."""
    names = set()
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return public(names)


def test_the_package_is_marked_typed():
    assert STUB.with_name("py.typed").is_file()


def test_the_stub_names_every_module_level_binding_and_no_other():
    ignored = {"annotations", "typing", "numpy"}  # imports of the stub itself
    assert defined_names(stub_tree().body) - ignored == public(dir(_core)) - ignored


def test_each_class_of_the_stub_names_its_own_members():
    classes = {node.name: node for node in stub_tree().body if isinstance(node, ast.ClassDef)}
    assert classes
    for name, node in classes.items():
        cls = getattr(_core, name)
        stub = defined_names(node.body)
        own = public(vars(cls))
        if issubclass(cls, BaseException):
            own = set()  # exceptions take their members from the base class
        assert stub == own | (stub & public(dir(cls))), name
        assert own <= stub, f"{name}: {sorted(own - stub)} missing from the stub"
