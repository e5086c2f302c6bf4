"""The package's rules that import-linter cannot state, read from its source.

Which modules may import aiohttp, click and rich, and the layers, are
import-linter contracts in pyproject (`nox -s lint-imports`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import comet_replicate_async

PACKAGE = Path(comet_replicate_async.__file__).parent
MUTABLE_CALLS = {"set", "list", "dict", "bytearray", "defaultdict", "deque", "Counter"}
MUTABLE_DISPLAYS = (
    ast.List,
    ast.Dict,
    ast.Set,
    ast.ListComp,
    ast.DictComp,
    ast.SetComp,
)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def name_of(module: Path) -> str:
    return module.relative_to(PACKAGE).as_posix()


def module_level_state(module: Path) -> list[str]:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        names = [target.id for target in targets if isinstance(target, ast.Name)]
        if names == ["__all__"]:
            continue
        called = value.func if isinstance(value, ast.Call) else None
        called_name = ast.unparse(called).rsplit(".", 1)[-1] if called else ""
        if isinstance(value, MUTABLE_DISPLAYS) or called_name in MUTABLE_CALLS:
            found.extend(f"{name_of(module)}:{name}" for name in names)
    return found


def test_no_module_holds_mutable_state() -> None:
    found = [entry for module in modules() for entry in module_level_state(module)]

    assert found == []


# Short modules with one job: past these a module is doing two things. The
# session is the table of contents of the others, so it stays shorter still.
MODULE_LINES = 450
# 410: the batch calls' two overloaded forms are the session's own methods, as
# composition wants (the alternative was a base class in another module).
SESSION_LINES = 410


def test_no_module_outgrows_one_job() -> None:
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    too_long = {name: n for name, n in lengths.items() if n > MODULE_LINES}
    assert not too_long, f"split these modules (over {MODULE_LINES} lines): {too_long}"
    assert lengths["_session.py"] <= SESSION_LINES, lengths["_session.py"]


# Reach-through: one object reading another's underscore attributes (`x._name`
# where `x` is not `self` or `cls`). The namedtuple and enum APIs, and
# `os._exit`, are public despite their underscore.
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_name_", "_value_"}


def reach_through(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") or node.attr in PUBLIC_UNDERSCORED:
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and (
            owner.id in {"self", "cls"} or (owner.id, node.attr) == ("os", "_exit")
        ):
            continue
        yield node.lineno, node.attr


def test_no_module_reads_another_objects_underscore_attributes() -> None:
    found = sorted(
        f"{name_of(module)}:{line} {attr}"
        for module in modules()
        for line, attr in reach_through(ast.parse(module.read_text(encoding="utf-8")))
    )

    assert found == []


def test_the_reach_through_check_sees_each_kind_of_read() -> None:
    tree = ast.parse(
        "self._mine\n"
        "cls._ours\n"
        "session._window\n"
        "self.session._counters\n"
        "super()._create_item()\n"
        "point._replace(x=1)\n"
        "Colour.RED._value_\n"
        "os._exit(1)\n"
        "other.__class__\n"
    )

    assert sorted(reach_through(tree)) == [
        (3, "_window"),
        (4, "_counters"),
        (5, "_create_item"),
    ]
