"""The type stub names what the native module has, and no more."""

from __future__ import annotations

import ast
from pathlib import Path

import sluice._native as native

STUB = Path(__file__).parent.parent / "python" / "sluice" / "_native.pyi"


def stub_classes() -> dict:
    tree = ast.parse(STUB.read_text())
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
            classes[node.name] = names
    return classes


def public(cls) -> set:
    own = set(vars(cls))
    special = {"__iter__", "__next__", "__aiter__", "__anext__", "__enter__", "__exit__", "__aenter__", "__aexit__"}
    return {n for n in own if not n.startswith("_") or n in special}


def test_every_native_class_and_member_is_in_the_stub():
    stub = stub_classes()
    native_classes = {n for n in dir(native) if isinstance(getattr(native, n), type)}
    assert native_classes == set(stub), "classes differ"
    for name in sorted(native_classes):
        cls = getattr(native, name)
        inherited = set()
        for base in cls.__mro__[1:]:
            if base.__module__.startswith("sluice"):
                inherited |= public(base)
        assert public(cls) - inherited == stub[name] - inherited, name
