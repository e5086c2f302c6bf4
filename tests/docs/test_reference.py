"""The API reference pages document exactly the public names, each once."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

import comet_replicate_async
import comet_replicate_async.testing

DOCS = Path(__file__).resolve().parents[2] / "docs"
DIRECTIVE = re.compile(r"^::: (\S+)$", re.MULTILINE)


@pytest.mark.parametrize(
    ("page", "module"),
    [
        ("reference.md", comet_replicate_async),
        ("reference-testing.md", comet_replicate_async.testing),
    ],
)
def test_reference_lists_every_public_name_once(page: str, module: ModuleType) -> None:
    documented = DIRECTIVE.findall((DOCS / page).read_text(encoding="utf-8"))
    public = [f"{module.__name__}.{name}" for name in module.__all__]

    assert sorted(documented) == sorted(public)
