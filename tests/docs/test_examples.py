"""Every code block the docs mark runnable runs, against FakeCometAPI.

A block is runnable when the line `<!-- runnable -->` comes right before its
```` ```python ```` fence. Blocks say `Session()`: the key and base URL come from
`COMETAPI_KEY` and `COMETAPI_BASE_URL`, set to the fake's. A block with top-level
`await` runs on the test's event loop; a script that starts its own loop
(`anyio.run(main)`) runs in a worker thread, talking to the fake over loopback.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

import anyio
import anyio.to_thread
import pytest

from comet_replicate_async.testing import FakeCometAPI, Latency

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).resolve().parents[2] / "docs"
MARKER = "<!-- runnable -->"
FENCE = re.compile(r"```python\b")
# Pages whose main example must stay runnable.
PAGES_WITH_RUNNABLE_EXAMPLES = {
    "index.md",
    "batches.md",
    "typed-inputs.md",
    "deadlines.md",
    "notebooks.md",
    "testing.md",
}


@dataclass(frozen=True)
class Block:
    """One runnable block: where it is, and its code."""

    page: Path
    first_line: int  # 1-based line number of the code's first line in the page
    source: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.first_line}"

    def compile(self) -> CodeType:
        """The block as code, with tracebacks pointing at the page's own lines."""
        padded = "\n" * (self.first_line - 1) + self.source
        return compile(
            padded, str(self.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )


def runnable_blocks() -> list[Block]:
    """Every block marked runnable in the docs, in page order."""
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if line.strip() == MARKER:
                blocks.append(_block_after(page, lines, number))
    return blocks


def _block_after(page: Path, lines: list[str], marker: int) -> Block:
    fence = marker + 1
    # A marker that does not sit on a python block is a mistake, not a skip.
    if fence >= len(lines) or not FENCE.match(lines[fence]):
        raise ValueError(
            f"{page}:{marker + 1}: {MARKER} must precede a ```python fence"
        )
    end = next(
        (n for n in range(fence + 1, len(lines)) if lines[n].strip() == "```"), None
    )
    if end is None:
        raise ValueError(f"{page}:{fence + 1}: the python block is never closed")
    return Block(page, fence + 2, "\n".join(lines[fence + 1 : end]) + "\n")


BLOCKS = runnable_blocks()


@pytest.fixture
async def docs_fake(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[FakeCometAPI]:
    """The fake, with `Session()` pointed at it and a scratch working directory."""
    # flux-1.1-pro-ultra takes 1.5 s, as it would take seconds for real: the
    # deadline example's one-second deadline passes, then the prediction finishes.
    latency = {"flux-1.1-pro-ultra": Latency.constant(1.5)}
    async with FakeCometAPI(latency=latency) as fake:
        monkeypatch.setenv("COMETAPI_KEY", fake.api_key)
        monkeypatch.setenv("COMETAPI_BASE_URL", fake.base_url)
        monkeypatch.chdir(tmp_path)  # examples save files
        yield fake


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
async def test_runnable_block_runs(block: Block, docs_fake: FakeCometAPI) -> None:
    code = block.compile()
    namespace = {"__name__": "__main__"}
    with anyio.fail_after(30):
        if code.co_flags & inspect.CO_COROUTINE:
            await eval(code, namespace)
        else:
            await anyio.to_thread.run_sync(exec, code, namespace)


def test_the_main_examples_are_runnable() -> None:
    pages = {str(block.page.relative_to(DOCS)) for block in BLOCKS}
    assert pages >= PAGES_WITH_RUNNABLE_EXAMPLES


def test_a_marker_must_precede_a_python_block() -> None:
    lines = ["<!-- runnable -->", "```bash", "echo hi", "```"]
    with pytest.raises(ValueError, match="must precede"):
        _block_after(DOCS / "page.md", lines, 0)
