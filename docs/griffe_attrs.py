"""A griffe extension that shows the `__init__` attrs generates for each attrs class.

The API reference is built by static analysis, which sees no `__init__` in an attrs
class: its signature would be empty and its documented arguments "unknown". This
extension imports each class, reads the signature attrs built, and adds it, with
the annotations written in the source (so they link) and the real defaults.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import attrs
import griffe

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
}


class AttrsInit(griffe.Extension):
    """Adds the attrs-generated `__init__` to every attrs class of a package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Once the package is loaded: visit its classes, inherited fields resolved."""
        for cls in _classes(pkg):
            runtime = _runtime_object(cls)
            if runtime is not None and attrs.has(runtime):
                cls.set_member("__init__", _init_of(cls, runtime))


def _classes(module: griffe.Module) -> list[griffe.Class]:
    found: list[griffe.Class] = []
    for member in module.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Module):
            found += _classes(member)
        elif isinstance(member, griffe.Class):
            found.append(member)
    return found


def _runtime_object(cls: griffe.Class) -> Any:
    try:
        return getattr(importlib.import_module(cls.module.path), cls.name)
    except (ImportError, AttributeError):
        return None


def _init_of(cls: griffe.Class, runtime: type) -> griffe.Function:
    parameters = [
        griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
    ]
    defaults = {field.alias: field.default for field in attrs.fields(runtime)}
    for name, parameter in inspect.signature(runtime).parameters.items():
        parameters.append(
            griffe.Parameter(
                name,
                annotation=_annotation(cls, name, parameter),
                kind=_KINDS[parameter.kind],
                default=_default(defaults.get(name, parameter.default)),
            )
        )
    return griffe.Function(
        "__init__",
        parent=cls,
        lineno=cls.lineno,
        endlineno=cls.lineno,
        parameters=griffe.Parameters(*parameters),
        returns="None",
    )


def _annotation(
    cls: griffe.Class, name: str, parameter: inspect.Parameter
) -> str | griffe.Expr | None:
    # The source's own annotation is an expression griffe can link; the
    # runtime one is a plain string.
    member = cls.all_members.get(name)
    if isinstance(member, griffe.Attribute) and member.annotation is not None:
        return member.annotation
    if parameter.annotation is inspect.Parameter.empty:
        return None
    return str(parameter.annotation)


def _default(default: Any) -> str | None:
    if default is attrs.NOTHING or default is inspect.Parameter.empty:
        return None
    if isinstance(default, attrs.Factory):
        factory = default.factory
        name = getattr(factory, "__name__", "<lambda>")
        return "<factory>" if name == "<lambda>" else f"{name}()"
    return repr(default)
