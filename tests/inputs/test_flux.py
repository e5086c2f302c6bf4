"""Typed inputs for the seven FLUX models: boundaries, messages, what is sent."""

from __future__ import annotations

import base64
import runpy
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet_replicate_async import (
    Flux11Pro,
    Flux11ProUltra,
    FluxDev,
    FluxInput,
    FluxKontextMax,
    FluxKontextPro,
    FluxPro,
    FluxSchnell,
    InputValidationError,
    Status,
)
from comet_replicate_async._inputs.flux import FLUX_INPUTS
from comet_replicate_async._inputs.images import MAX_IMAGE_BYTES
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import session_for

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 16

# (class, field, lowest allowed, highest allowed): from the models' schemas.
INTEGER_RANGES: list[tuple[type[FluxInput], str, int, int]] = [
    (FluxSchnell, "num_outputs", 1, 4),
    (FluxSchnell, "num_inference_steps", 1, 4),
    (FluxSchnell, "output_quality", 0, 100),
    (FluxDev, "num_outputs", 1, 4),
    (FluxDev, "num_inference_steps", 1, 50),
    (FluxDev, "output_quality", 0, 100),
    (FluxPro, "steps", 1, 50),
    (FluxPro, "safety_tolerance", 1, 6),
    (FluxPro, "output_quality", 0, 100),
    (Flux11Pro, "safety_tolerance", 1, 6),
    (Flux11Pro, "output_quality", 0, 100),
    (Flux11ProUltra, "safety_tolerance", 1, 6),
    (FluxKontextPro, "safety_tolerance", 0, 6),
    (FluxKontextMax, "safety_tolerance", 0, 6),
]
NUMBER_RANGES: list[tuple[type[FluxInput], str, float, float]] = [
    (FluxDev, "guidance", 0, 10),
    (FluxDev, "prompt_strength", 0, 1),
    (FluxPro, "guidance", 2, 5),
    (FluxPro, "interval", 1, 4),
    (Flux11ProUltra, "image_prompt_strength", 0, 1),
]
SCHNELL_RATIOS = [
    "1:1",
    "16:9",
    "21:9",
    "3:2",
    "2:3",
    "4:5",
    "5:4",
    "3:4",
    "4:3",
    "9:16",
    "9:21",
]
PRO_RATIOS = ["custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"]
ULTRA_RATIOS = [
    "21:9",
    "16:9",
    "3:2",
    "4:3",
    "5:4",
    "1:1",
    "4:5",
    "3:4",
    "2:3",
    "9:16",
    "9:21",
]
KONTEXT_RATIOS = ["match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9", "9:21", "2:1", "1:2"]  # fmt: skip
CHOICES: list[tuple[type[FluxInput], str, list[str], list[Any]]] = [
    (FluxSchnell, "aspect_ratio", SCHNELL_RATIOS, ["custom", "1:3", 1]),
    (FluxSchnell, "output_format", ["webp", "jpg", "png"], ["gif", "JPG"]),
    (FluxSchnell, "megapixels", ["1", "0.25"], [1, "2", 0.25]),
    (FluxDev, "aspect_ratio", SCHNELL_RATIOS, ["custom"]),
    (FluxDev, "output_format", ["webp", "jpg", "png"], ["jpeg"]),
    (FluxDev, "megapixels", ["1", "0.25"], ["0.5"]),
    (FluxPro, "aspect_ratio", PRO_RATIOS, ["21:9", "match_input_image"]),
    (FluxPro, "output_format", ["webp", "jpg", "png"], ["tiff"]),
    (Flux11Pro, "aspect_ratio", PRO_RATIOS, ["9:21"]),
    (Flux11Pro, "output_format", ["webp", "jpg", "png"], ["bmp"]),
    (Flux11ProUltra, "aspect_ratio", ULTRA_RATIOS, ["custom"]),
    (Flux11ProUltra, "output_format", ["jpg", "png"], ["webp"]),
    (FluxKontextPro, "aspect_ratio", KONTEXT_RATIOS, ["custom", "3:1"]),
    (FluxKontextPro, "output_format", ["jpg", "png"], ["webp"]),
    (FluxKontextMax, "aspect_ratio", KONTEXT_RATIOS, ["custom"]),
    (FluxKontextMax, "output_format", ["jpg", "png"], ["webp"]),
]
DIMENSIONS = [
    (cls, name) for cls in (FluxPro, Flux11Pro) for name in ("width", "height")
]


def build(cls: type[FluxInput], **fields: Any) -> FluxInput:
    if cls in (FluxPro, Flux11Pro) and fields.keys() & {"width", "height"}:
        fields = {"aspect_ratio": "custom", "width": 512, "height": 512, **fields}
    return cls("a paper boat", **fields)


def rejected(cls: type[FluxInput], **fields: Any) -> InputValidationError:
    with pytest.raises(InputValidationError) as caught:
        build(cls, **fields)
    return caught.value


def test_every_constrained_field_has_a_boundary_case() -> None:
    covered = {
        (cls, name) for cls, name, *_ in INTEGER_RANGES + NUMBER_RANGES + CHOICES
    }
    covered |= set(DIMENSIONS)
    constrained = {
        (cls, field.name)
        for cls in FLUX_INPUTS
        for field in attrs.fields(cls)
        if (check := field.metadata.get("check"))
        and check.kind in ("integer", "number", "choice")
        and field.name != "seed"
    }
    assert constrained == covered


@pytest.mark.parametrize(("cls", "name", "low", "high"), INTEGER_RANGES)
def test_integer_boundaries(
    cls: type[FluxInput], name: str, low: int, high: int
) -> None:
    assert build(cls, **{name: low}).to_input()[name] == low
    assert build(cls, **{name: high}).to_input()[name] == high
    for bad in (low - 1, high + 1, float(low), True, str(low)):
        error = rejected(cls, **{name: bad})
        assert f"{name}={bad!r}" in str(error)
        assert f"from {low} to {high}" in str(error)


@pytest.mark.parametrize(("cls", "name", "low", "high"), NUMBER_RANGES)
def test_number_boundaries(
    cls: type[FluxInput], name: str, low: float, high: float
) -> None:
    step = (high - low) / 1000
    for good in (low, high, int(low), (low + high) / 2):
        assert build(cls, **{name: good}).to_input()[name] == good
    for bad in (low - step, high + step, "1", True):
        assert f"{name}={bad!r}" in str(rejected(cls, **{name: bad}))


@pytest.mark.parametrize(("cls", "name", "allowed", "refused"), CHOICES)
def test_choices(
    cls: type[FluxInput], name: str, allowed: list[str], refused: list[Any]
) -> None:
    for value in allowed:
        if cls in (FluxPro, Flux11Pro) and value == "custom":
            assert (
                build(cls, **{name: value, "width": 512, "height": 512}).to_input()[
                    name
                ]
                == value
            )
        else:
            assert build(cls, **{name: value}).to_input()[name] == value
    for value in refused:
        error = rejected(cls, **{name: value})
        assert f"{name}={value!r}: must be one of" in str(error)


@pytest.mark.parametrize(("cls", "name"), DIMENSIONS)
def test_custom_dimensions(cls: type[FluxInput], name: str) -> None:
    for good in (256, 288, 1408, 1440):
        assert build(cls, **{name: good}).to_input()[name] == good
    for bad in (224, 1472, 257, 1000):
        assert f"{name}={bad!r}" in str(rejected(cls, **{name: bad}))


@pytest.mark.parametrize("cls", [FluxPro, Flux11Pro])
def test_width_and_height_only_with_custom(cls: type[FluxInput]) -> None:
    error = rejected(cls, aspect_ratio="16:9", width=512, height=512)
    assert "width=512: only allowed with aspect_ratio='custom'" in str(error)
    assert "height=512" in str(error)
    assert "needs both width and height" in str(
        rejected(cls, aspect_ratio="custom", width=512, height=None)
    )


@pytest.mark.parametrize("cls", [FluxKontextPro, FluxKontextMax])
def test_kontext_safety_tolerance_at_most_2_with_an_input_image(
    cls: type[FluxInput],
) -> None:
    assert build(cls, input_image="https://x/a.png", safety_tolerance=2)
    assert build(cls, safety_tolerance=6)  # no image: the full range
    error = rejected(cls, input_image="https://x/a.png", safety_tolerance=3)
    assert "safety_tolerance=3: at most 2 when input_image is given" in str(error)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(InputValidationError) as caught:
        FluxSchnell(
            " ", num_outputs=5, output_format="gif", megapixels=1, go_fast="yes"
        )  # type: ignore[arg-type]

    problems = caught.value.problems
    assert len(problems) == 5
    for field in (
        "prompt",
        "num_outputs=5",
        "output_format='gif'",
        "megapixels=1",
        "go_fast='yes'",
    ):
        assert any(field in problem for problem in problems), field
    assert isinstance(caught.value, ValueError)


def test_only_what_the_user_set_is_sent_and_extras_pass_through() -> None:
    typed = FluxKontextMax(
        "edit it", seed=7, extra={"input_image_2": "https://x/b.png"}
    )

    assert typed.to_input() == {
        "prompt": "edit it",
        "seed": 7,
        "input_image_2": "https://x/b.png",
    }


def test_extra_may_not_shadow_a_field() -> None:
    with pytest.raises(InputValidationError, match="field of its own"):
        FluxSchnell("x", extra={"num_outputs": 9})


def test_from_mapping_splits_known_and_unknown_keys() -> None:
    typed = FluxDev.from_mapping({"prompt": "x", "guidance": 4, "lora_scale": 0.5})

    assert typed.guidance == 4
    assert typed.extra == {"lora_scale": 0.5}
    assert typed.to_input() == {"prompt": "x", "guidance": 4, "lora_scale": 0.5}


@pytest.mark.parametrize(
    ("cls", "model", "shape"),
    [
        (FluxSchnell, "black-forest-labs/flux-schnell", "list"),
        (FluxDev, "black-forest-labs/flux-dev", "list"),
        (FluxPro, "black-forest-labs/flux-pro", "single"),
        (Flux11Pro, "black-forest-labs/flux-1.1-pro", "single"),
        (Flux11ProUltra, "black-forest-labs/flux-1.1-pro-ultra", "single"),
        (FluxKontextPro, "black-forest-labs/flux-kontext-pro", "single"),
        (FluxKontextMax, "black-forest-labs/flux-kontext-max", "single"),
    ],
)
def test_each_class_knows_its_model_and_output_shape(
    cls: type[FluxInput], model: str, shape: str
) -> None:
    assert cls.model == model
    assert cls.output_shape == shape


# Images


def test_image_urls_pass_through() -> None:
    assert (
        FluxDev("x", image="https://cdn.example/a.png").to_input()["image"]
        == "https://cdn.example/a.png"
    )


@pytest.mark.parametrize(
    ("data", "media_type"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")],
)
def test_image_bytes_become_data_urls(data: bytes, media_type: str) -> None:
    sent = FluxKontextPro("x", input_image=data).to_input()["input_image"]

    assert sent == f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def test_image_paths_become_data_urls(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(JPEG)

    for value in (path, str(path)):
        assert (
            FluxPro("x", image_prompt=value)
            .to_input()["image_prompt"]
            .startswith("data:image/jpeg;base64,")
        )  # type: ignore[arg-type]


def test_bad_images_are_rejected_with_a_clear_reason(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\x00" * MAX_IMAGE_BYTES)
    text = tmp_path / "notes.txt"
    text.write_text("hello")

    assert "over the 10 MB limit" in str(rejected(FluxKontextPro, input_image=big))
    assert "upload it and pass its URL" in str(
        rejected(FluxKontextPro, input_image=big)
    )
    assert "not a JPEG, PNG, GIF or WebP" in str(
        rejected(FluxKontextPro, input_image=text)
    )
    assert "neither an http(s) URL nor a file" in str(
        rejected(FluxKontextPro, input_image="nope.png")
    )
    assert "over the 10 MB limit" in str(
        rejected(FluxDev, image=PNG + b"\x00" * MAX_IMAGE_BYTES)
    )


def test_image_reprs_stay_short() -> None:
    assert len(repr(FluxKontextPro("x", input_image=PNG * 1000))) < 400


# Hypothesis: the valid space round-trips.

schnell_inputs = st.builds(
    FluxSchnell,
    prompt=st.text(min_size=1).filter(str.strip),
    aspect_ratio=st.none() | st.sampled_from(SCHNELL_RATIOS),
    num_outputs=st.none() | st.integers(1, 4),
    num_inference_steps=st.none() | st.integers(1, 4),
    seed=st.none() | st.integers(0, 2**31),
    output_format=st.none() | st.sampled_from(["webp", "jpg", "png"]),
    output_quality=st.none() | st.integers(0, 100),
    disable_safety_checker=st.none() | st.booleans(),
    go_fast=st.none() | st.booleans(),
    megapixels=st.none() | st.sampled_from(["1", "0.25"]),
)
pro_inputs = st.builds(
    FluxPro,
    prompt=st.text(min_size=1).filter(str.strip),
    guidance=st.none() | st.floats(2, 5),
    interval=st.none() | st.floats(1, 4),
    safety_tolerance=st.none() | st.integers(1, 6),
    steps=st.none() | st.integers(1, 50),
    prompt_upsampling=st.none() | st.booleans(),
)


@given(typed=schnell_inputs | pro_inputs)
def test_valid_inputs_round_trip_through_their_dict(typed: FluxInput) -> None:
    body = typed.to_input()

    assert type(typed).from_mapping(body) == typed
    assert set(body) == {
        field.name
        for field in attrs.fields(type(typed))
        if field.name != "extra" and getattr(typed, field.name) is not None
    }


# Over HTTP: the server receives exactly what the user set.

EXAMPLES: list[FluxInput] = [
    FluxSchnell("a fox", num_outputs=2, megapixels="0.25", go_fast=False),
    FluxDev("a fox", guidance=3.5, image=PNG, prompt_strength=0.6),
    FluxPro("a fox", aspect_ratio="custom", width=1024, height=768, safety_tolerance=5),
    Flux11Pro("a fox", output_format="png", prompt_upsampling=True),
    Flux11ProUltra("a fox", raw=True, output_format="jpg", image_prompt_strength=0.2),
    FluxKontextPro("make it blue", input_image="https://x/a.png", safety_tolerance=2),
    FluxKontextMax(
        "make it red", input_image=JPEG, extra={"input_image_2": "https://x/b.png"}
    ),
]


@pytest.mark.anyio
async def test_the_server_receives_exactly_what_was_set() -> None:
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(fake) as session:
            for typed in EXAMPLES:
                prediction = await session.run(typed)
                record = fake.predictions[prediction.id]

                assert prediction.status is Status.SUCCEEDED
                assert record.model == typed.model
                assert record.input == typed.to_input()
                shape = "list" if isinstance(prediction.output, list) else "single"
                assert shape == typed.output_shape


@pytest.mark.anyio
async def test_invalid_inputs_cost_no_request() -> None:
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(fake) as session:
            with pytest.raises(InputValidationError, match="owner/name"):
                await session.run("flux-schnell", {"prompt": "x"})
            with pytest.raises(
                InputValidationError, match="is for black-forest-labs/flux-pro"
            ):
                await session.run("black-forest-labs/flux-dev", FluxPro("x"))
            with pytest.raises(InputValidationError, match="num_outputs=9"):
                await session.run(FluxSchnell, {"prompt": "x", "num_outputs": 9})
            items = await session.gather(
                FluxSchnell,
                [
                    {"prompt": "ok"},
                    {"prompt": "bad", "num_outputs": 0, "output_quality": 101},
                    FluxSchnell("ok too"),
                ],
            )

    assert [item.ok for item in items] == [True, False, True]
    assert isinstance(items[1].error, InputValidationError)
    assert len(items[1].error.problems) == 2
    assert fake.stats.count("create") == 2


@pytest.mark.anyio
async def test_dicts_for_models_outside_the_seven_still_work() -> None:
    async with FakeCometAPI(
        default_latency=Latency.constant(0.01),
        extra_models=["black-forest-labs/flux-2-pro"],
    ) as fake:
        async with session_for(fake) as session:
            prediction = await session.run(
                "black-forest-labs/flux-2-pro", {"prompt": "x", "anything": [1, 2]}
            )

    assert fake.predictions[prediction.id].input == {"prompt": "x", "anything": [1, 2]}


def test_the_docs_tables_match_the_classes() -> None:
    docs = Path(__file__).parent.parent.parent / "docs"
    generator = runpy.run_path(str(docs / "gen_typed_inputs.py"))

    assert generator["render"]() in (docs / "typed-inputs.md").read_text()
