"""Predictions and batch items as HTML: cards in a notebook, the comparison grid
and the gallery page, all from one renderer."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from comet_replicate_async import (
    AmbiguousSubmitError,
    BatchItem,
    BudgetExceededError,
    FluxDev,
    FluxSchnell,
    HtmlGrid,
    Prediction,
    Status,
    html_grid,
)
from comet_replicate_async._cli._gallery import write_gallery
from comet_replicate_async._exceptions import error_for_status
from comet_replicate_async._html import Tile, item_model

SCHNELL = "black-forest-labs/flux-schnell"
DEV = "black-forest-labs/flux-dev"
PRO = "black-forest-labs/flux-1.1-pro"
SCRIPT = "<script>alert(1)</script>"
# The tags the renderer writes; anything else came from a value it failed to escape.
OUR_TAGS = {"style", "div", "figure", "figcaption", "a", "img", "span"}


class Parsed(HTMLParser):
    """What a browser would make of the markup: tags, image sources, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.images: list[str] = []
        self.classes: list[str] = []
        self.text: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.in_style = tag == "style"
        found = dict(attrs)
        if tag == "img":
            self.images.append(str(found["src"]))
            assert found["loading"] == "lazy"
        self.classes += str(found.get("class") or "").split()

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False

    def handle_data(self, data: str) -> None:
        if not self.in_style:
            self.text.append(data)


def parse(markup: str) -> Parsed:
    parsed = Parsed()
    parsed.feed(markup)
    parsed.close()
    return parsed


def succeeded(
    prompt: str, *urls: str, model: str = SCHNELL, id: str = "p1"
) -> Prediction:
    return Prediction(
        id=id,
        status=Status.SUCCEEDED,
        model=model,
        input={"prompt": prompt},
        output=list(urls),
    )


def test_a_prediction_shows_each_output_image_its_status_prompt_and_id() -> None:
    urls = ("https://cdn.example/a.webp", "https://cdn.example/b.webp")
    prediction = succeeded("a red fox", *urls, id="q4chw5rey9")

    page = parse(prediction._repr_html_())

    assert page.images == list(urls)
    text = "".join(page.text)
    assert "succeeded" in text
    assert "a red fox" in text
    assert "q4chw5rey9" in text


def test_the_prompt_is_escaped_not_run() -> None:
    prediction = succeeded(SCRIPT, "https://cdn.example/a.webp")
    item = BatchItem(index=0, input={"prompt": SCRIPT}, prediction=prediction)

    for markup in (prediction._repr_html_(), item._repr_html_()):
        assert SCRIPT not in markup
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
        assert set(parse(markup).tags) <= OUR_TAGS


def test_a_failed_item_shows_its_error() -> None:
    failed = Prediction(
        id="f1",
        status=Status.FAILED,
        model=SCHNELL,
        input={"prompt": "a fox"},
        error="All generated images contained NSFW content.",
    )
    item = BatchItem(index=3, input={"prompt": "a fox"}, prediction=failed,
                     error=error_for_status(failed))  # fmt: skip

    text = "".join(parse(item._repr_html_()).text)

    assert "failed" in text
    assert "#3" in text
    assert "f1" in text
    assert "PredictionFailed" in text
    assert "NSFW content" in text
    assert "NSFW content" in "".join(parse(failed._repr_html_()).text)


def test_an_item_never_created_says_why() -> None:
    lost = AmbiguousSubmitError(SCHNELL, {"prompt": "a fox"}, TimeoutError("lost"))
    item = BatchItem(index=1, input=FluxSchnell(prompt="a fox"), error=lost)

    page = parse(item._repr_html_())

    assert page.images == []
    text = "".join(page.text)
    assert "ambiguous" in text
    assert "a fox" in text
    assert "AmbiguousSubmitError: create for black-forest-labs/flux-schnell" in text


def test_an_item_the_cost_cap_kept_back_was_not_sent() -> None:
    capped = BudgetExceededError(SCHNELL, price=0.003, cap=0.01, committed=0.009)
    item = BatchItem(index=4, input={"prompt": "a fox"}, error=capped)

    text = "".join(parse(item._repr_html_()).text)

    assert "not sent" in text
    assert "BudgetExceededError: cost cap of $0.0100 reached" in text


def test_only_http_and_data_image_urls_become_images() -> None:
    prediction = succeeded(
        "x",
        "https://cdn.example/a.png",
        "HTTP://cdn.example/b.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://cdn.example/c.png",
    )

    assert parse(prediction._repr_html_()).images == [
        "https://cdn.example/a.png",
        "HTTP://cdn.example/b.png",
        "data:image/png;base64,iVBORw0KGgo=",
    ]


@given(
    prompt=st.text(),
    urls=st.lists(
        st.builds(lambda tail: f"https://cdn.example/{tail}", st.text()), max_size=3
    ),
    error=st.text(),
    prediction_id=st.text(),
)
def test_no_value_can_add_markup(
    prompt: str, urls: list[str], error: str, prediction_id: str
) -> None:
    prediction = Prediction(
        id=prediction_id,
        status=Status.FAILED,
        model=SCHNELL,
        input={"prompt": prompt},
        output=urls,
        error=error,
    )
    item = BatchItem(index=0, input={"prompt": prompt}, prediction=prediction)

    for markup in (
        prediction._repr_html_(),
        item._repr_html_(),
        str(html_grid([item])),
    ):
        page = parse(markup)
        assert set(page.tags) <= OUR_TAGS
        assert page.images == urls
        text = "".join(page.text)
        assert prompt in text
        assert error in text
        assert prediction_id in text


def test_the_grid_has_one_row_per_prompt_and_one_column_per_model() -> None:
    items = [
        BatchItem(index=n, input={"prompt": prompt},
                  prediction=succeeded(prompt, f"https://cdn.example/{n}.webp",
                                       model=model, id=f"id{n}"))
        for n, (prompt, model) in enumerate(
            [("a fox", SCHNELL), ("an owl", SCHNELL), ("a fox", DEV),
             ("an owl", DEV), ("a fox", PRO)]
        )
    ]  # fmt: skip

    grid = html_grid(items)
    markup = grid._repr_html_()
    page = parse(markup)

    assert isinstance(grid, HtmlGrid)
    assert str(grid) == markup == grid.html
    assert page.classes.count("cra-compare") == 1
    heads = [t.strip() for t in page.text if t.strip()]
    # Header row (the owner and the name of each model), then a row per prompt.
    assert heads[:6] == [
        "black-forest-labs/", "flux-schnell",
        "black-forest-labs/", "flux-dev",
        "black-forest-labs/", "flux-1.1-pro",
    ]  # fmt: skip
    assert page.classes.count("cra-prompt") == 2
    assert page.classes.count("cra-card") == 5
    assert page.classes.count("cra-missing") == 1  # "an owl" was not run on pro
    # Row by row: a fox on schnell, dev, pro; then an owl on schnell, dev.
    assert page.images == [f"https://cdn.example/{n}.webp" for n in (0, 2, 4, 1, 3)]


def test_one_model_wraps_around_as_the_gallery_always_did() -> None:
    items = [
        BatchItem(index=n, input=FluxSchnell(prompt=f"fox {n}"),
                  prediction=succeeded(f"fox {n}", f"https://cdn.example/{n}.webp"))
        for n in range(3)
    ]  # fmt: skip

    page = parse(str(html_grid(items)))

    assert page.classes.count("cra-wrap") == 1
    assert "cra-compare" not in page.classes
    assert page.images == [f"https://cdn.example/{n}.webp" for n in range(3)]


def test_a_prompt_twice_on_one_model_takes_two_rows() -> None:
    predictions = [
        succeeded("a fox", f"https://cdn.example/{n}.webp", model=model, id=str(n))
        for n, model in enumerate([SCHNELL, SCHNELL, DEV])
    ]

    page = parse(str(html_grid(predictions)))

    assert page.classes.count("cra-prompt") == 2
    assert page.classes.count("cra-missing") == 1


def test_an_items_model_is_its_predictions_else_its_typed_inputs() -> None:
    created = BatchItem(index=0, input={"prompt": "x"}, prediction=succeeded("x"))
    typed = BatchItem(index=1, input=FluxDev(prompt="x"), error=ValueError("no"))
    plain = BatchItem(index=2, input={"prompt": "x"}, error=ValueError("no"))

    assert [item_model(item) for item in (created, typed, plain)] == [
        SCHNELL,
        DEV,
        None,
    ]


def test_the_gallery_page_is_the_same_grid(tmp_path: Path) -> None:
    tiles = [
        Tile(prompt=prompt, status="succeeded", model=model, index=n,
             prediction_id=f"id{n}", images=(f"{n:05d}-id{n}-0.webp",))
        for n, (prompt, model) in enumerate(
            [(SCRIPT, SCHNELL), (SCRIPT, DEV), ("an owl", SCHNELL)]
        )
    ]  # fmt: skip
    path = tmp_path / "index.html"

    write_gallery(path, "prompts.txt", tiles)

    markup = path.read_text()
    page = parse(markup)
    assert markup.startswith("<!doctype html>")
    assert SCRIPT not in markup
    assert page.classes.count("cra-compare") == 1
    assert page.images == ["00000-id0-0.webp", "00001-id1-0.webp", "00002-id2-0.webp"]
    assert "3 inputs: 3 succeeded" in "".join(page.text)
    assert not list(tmp_path.glob("*.part"))
