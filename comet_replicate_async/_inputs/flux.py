"""Typed inputs for the seven FLUX models, with their fields, ranges and enums.

The facts come from the models' published schemas. Where CometAPI's copy of a
schema is unconfirmed (flux-kontext-max is assumed to match flux-kontext-pro) the
class docstring says so; `extra=` sends anything a class does not know.
"""

from __future__ import annotations

import difflib
from typing import ClassVar, Literal, get_args

import attrs

from . import fields
from .base import FluxInput, OutputShape, choice, image, integer, number, switch
from .fields import Megapixels, OutputFormat

__all__ = [
    "FLUX_INPUTS",
    "Flux11Pro",
    "Flux11ProUltra",
    "FluxDev",
    "FluxKontextMax",
    "FluxKontextPro",
    "FluxPro",
    "FluxSchnell",
    "typed_input_class",
]

SchnellRatio = Literal[
    "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"
]
ProRatio = Literal[
    "custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"
]
UltraRatio = Literal[
    "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "9:21"
]
KontextRatio = Literal[
    "match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3",
    "4:5", "5:4", "21:9", "9:21", "2:1", "1:2",
]  # fmt: skip
JpgOrPng = Literal["jpg", "png"]
Image = str | bytes

# The choices a field checks are its type's: one list, read off the Literal.
_SCHNELL_RATIOS = get_args(SchnellRatio)
_PRO_RATIOS = get_args(ProRatio)
_ULTRA_RATIOS = get_args(UltraRatio)
_KONTEXT_RATIOS = get_args(KontextRatio)


def _custom_size_problems(
    aspect_ratio: str | None, width: int | None, height: int | None
) -> list[str]:
    problems = []
    if aspect_ratio != "custom":
        problems += [
            f"{name}={value!r}: only allowed with aspect_ratio='custom'"
            for name, value in (("width", width), ("height", height))
            if value is not None
        ]
    elif width is None or height is None:
        problems.append("aspect_ratio='custom': needs both width and height")
    return problems


@attrs.frozen
class FluxSchnell(FluxInput):
    """`black-forest-labs/flux-schnell`: fast, 1 to 4 steps; output is a list of URLs."""

    model: ClassVar[str] = "black-forest-labs/flux-schnell"
    output_shape: ClassVar[OutputShape] = "list"

    aspect_ratio: SchnellRatio | None = choice(
        "image proportions (default 1:1)", *_SCHNELL_RATIOS
    )
    num_outputs: int | None = fields.num_outputs()
    num_inference_steps: int | None = integer("denoising steps (default 4)", 1, 4)
    seed: int | None = fields.seed()
    output_format: OutputFormat | None = fields.output_format()
    output_quality: int | None = fields.output_quality()
    disable_safety_checker: bool | None = fields.disable_safety_checker()
    go_fast: bool | None = fields.go_fast()
    megapixels: Megapixels | None = fields.megapixels()


@attrs.frozen
class FluxDev(FluxInput):
    """`black-forest-labs/flux-dev`: 1 to 50 steps, optional img2img; output is a list."""

    model: ClassVar[str] = "black-forest-labs/flux-dev"
    output_shape: ClassVar[OutputShape] = "list"

    aspect_ratio: SchnellRatio | None = choice(
        "image proportions (default 1:1)", *_SCHNELL_RATIOS
    )
    image: Image | None = image(
        "img2img start image; the output follows its proportions"
    )
    prompt_strength: float | None = number(
        "img2img: how much the prompt changes the image (default 0.8)", 0, 1
    )
    num_outputs: int | None = fields.num_outputs()
    num_inference_steps: int | None = integer("denoising steps (default 28)", 1, 50)
    guidance: float | None = number(
        "how closely to follow the prompt (default 3)", 0, 10
    )
    seed: int | None = fields.seed()
    output_format: OutputFormat | None = fields.output_format()
    output_quality: int | None = fields.output_quality()
    disable_safety_checker: bool | None = fields.disable_safety_checker()
    go_fast: bool | None = fields.go_fast()
    megapixels: Megapixels | None = fields.megapixels()


@attrs.frozen
class FluxPro(FluxInput):
    """`black-forest-labs/flux-pro`; output is a single URL."""

    model: ClassVar[str] = "black-forest-labs/flux-pro"
    output_shape: ClassVar[OutputShape] = "single"

    image_prompt: Image | None = fields.image_prompt()
    aspect_ratio: ProRatio | None = choice(
        "image proportions (default 1:1)", *_PRO_RATIOS
    )
    width: int | None = fields.custom_width()
    height: int | None = fields.custom_height()
    steps: int | None = integer("diffusion steps, deprecated (default 25)", 1, 50)
    guidance: float | None = number(
        "how closely to follow the prompt (default 3)", 2, 5
    )
    interval: float | None = number("variance, deprecated (default 2)", 1, 4)
    safety_tolerance: int | None = fields.safety_tolerance()
    seed: int | None = fields.seed()
    prompt_upsampling: bool | None = fields.prompt_upsampling()
    output_format: OutputFormat | None = fields.output_format()
    output_quality: int | None = fields.output_quality()

    def _cross_field_problems(self) -> list[str]:
        return _custom_size_problems(self.aspect_ratio, self.width, self.height)


@attrs.frozen
class Flux11Pro(FluxInput):
    """`black-forest-labs/flux-1.1-pro`; output is a single URL."""

    model: ClassVar[str] = "black-forest-labs/flux-1.1-pro"
    output_shape: ClassVar[OutputShape] = "single"

    image_prompt: Image | None = fields.image_prompt()
    aspect_ratio: ProRatio | None = choice(
        "image proportions (default 1:1)", *_PRO_RATIOS
    )
    width: int | None = fields.custom_width()
    height: int | None = fields.custom_height()
    safety_tolerance: int | None = fields.safety_tolerance()
    seed: int | None = fields.seed()
    prompt_upsampling: bool | None = fields.prompt_upsampling()
    output_format: OutputFormat | None = fields.output_format()
    output_quality: int | None = fields.output_quality()

    def _cross_field_problems(self) -> list[str]:
        return _custom_size_problems(self.aspect_ratio, self.width, self.height)


@attrs.frozen
class Flux11ProUltra(FluxInput):
    """`black-forest-labs/flux-1.1-pro-ultra`: up to 4 MP; output is a single URL."""

    model: ClassVar[str] = "black-forest-labs/flux-1.1-pro-ultra"
    output_shape: ClassVar[OutputShape] = "single"

    aspect_ratio: UltraRatio | None = choice(
        "image proportions (default 1:1)", *_ULTRA_RATIOS
    )
    raw: bool | None = switch("less processed, more natural images (default false)")
    image_prompt: Image | None = fields.image_prompt()
    image_prompt_strength: float | None = number(
        "weight of image_prompt (default 0.1)", 0, 1
    )
    safety_tolerance: int | None = fields.safety_tolerance()
    seed: int | None = fields.seed()
    output_format: JpgOrPng | None = choice(
        "file format, no webp (default jpg)", *get_args(JpgOrPng)
    )


@attrs.frozen
class FluxKontextPro(FluxInput):
    """`black-forest-labs/flux-kontext-pro`: edit an image by instruction; single URL."""

    model: ClassVar[str] = "black-forest-labs/flux-kontext-pro"
    output_shape: ClassVar[OutputShape] = "single"

    input_image: Image | None = image("the image to edit")
    aspect_ratio: KontextRatio | None = choice(
        "proportions (default match_input_image)", *_KONTEXT_RATIOS
    )
    output_format: JpgOrPng | None = choice(
        "file format (default png)", *get_args(JpgOrPng)
    )
    safety_tolerance: int | None = integer(
        "0 strictest to 6; at most 2 with an input image (default 2)", 0, 6
    )
    prompt_upsampling: bool | None = fields.prompt_upsampling()
    seed: int | None = fields.seed()

    def _cross_field_problems(self) -> list[str]:
        tolerance = self.safety_tolerance
        if (
            self.input_image is not None
            and isinstance(tolerance, int)
            and tolerance > 2
        ):
            return [
                f"safety_tolerance={tolerance!r}: at most 2 when input_image is given"
            ]
        return []


@attrs.frozen
class FluxKontextMax(FluxKontextPro):
    """`black-forest-labs/flux-kontext-max`: the stronger Kontext; single URL.

    Its fields are assumed to match flux-kontext-pro's (CometAPI's copy of the schema
    is unconfirmed). CometAPI also accepts `input_image_2` to `input_image_4`: pass
    them through `extra`.
    """

    model: ClassVar[str] = "black-forest-labs/flux-kontext-max"


FLUX_INPUTS: tuple[type[FluxInput], ...] = (
    FluxSchnell,
    FluxDev,
    FluxPro,
    Flux11Pro,
    Flux11ProUltra,
    FluxKontextPro,
    FluxKontextMax,
)


def typed_input_class(model: str) -> type[FluxInput] | None:
    """The typed input class of a model id (`"black-forest-labs/flux-dev"` →
    `FluxDev`), or None for a model outside the seven."""
    return next((cls for cls in FLUX_INPUTS if cls.model == model), None)


def near_miss(model: str) -> str | None:
    """The FLUX model id that `model` is most likely a typo of, if any.

    `"black-forest-labs/flux-schnel"` gives `"black-forest-labs/flux-schnell"`;
    one of the seven itself, or nothing like them, gives None.
    """
    known = [cls.model for cls in FLUX_INPUTS]
    if model in known:
        return None
    close = difflib.get_close_matches(model, known, n=1, cutoff=0.8)
    return close[0] if close else None
