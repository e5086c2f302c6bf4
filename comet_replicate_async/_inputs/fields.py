"""The fields several FLUX inputs share, each declared once.

An attrs field is an object of its class: two classes cannot share one, so each
helper here builds a fresh field per call. The description, the range and the
default's words live here; `flux.py` lists which class has which, in the order
of the model's schema (the typed inputs page shows the fields in that order).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from .base import choice, dimension, image, integer, switch

__all__ = [
    "Megapixels",
    "OutputFormat",
    "custom_height",
    "custom_width",
    "disable_safety_checker",
    "go_fast",
    "image_prompt",
    "megapixels",
    "num_outputs",
    "output_format",
    "output_quality",
    "prompt_upsampling",
    "safety_tolerance",
    "seed",
]

OutputFormat = Literal["webp", "jpg", "png"]
Megapixels = Literal["1", "0.25"]


def seed() -> Any:
    """`seed`: the random seed."""
    return integer("random seed, for repeatable results")


def output_format() -> Any:
    """`output_format` of the models that write webp, jpg or png (webp first)."""
    return choice("file format (default webp)", *get_args(OutputFormat))


def output_quality() -> Any:
    """`output_quality`: the lossy formats' quality."""
    return integer("0 to 100, ignored for png (default 80)", 0, 100)


def safety_tolerance() -> Any:
    """`safety_tolerance` of the Pro models (Kontext's differs: 0 to 6)."""
    return integer("1 strictest to 6 most permissive (default 2)", 1, 6)


def prompt_upsampling() -> Any:
    """`prompt_upsampling`: the model rewrites the prompt."""
    return switch("let the model rewrite the prompt (default false)")


def custom_width() -> Any:
    """`width`, with `aspect_ratio='custom'` only (the class checks the pair)."""
    return dimension("with aspect_ratio='custom' only")


def custom_height() -> Any:
    """`height`, with `aspect_ratio='custom'` only (the class checks the pair)."""
    return dimension("with aspect_ratio='custom' only")


def image_prompt() -> Any:
    """`image_prompt`: a Redux image."""
    return image("Redux image to guide the composition")


def num_outputs() -> Any:
    """`num_outputs` of schnell and dev."""
    return integer("images to make (default 1)", 1, 4)


def disable_safety_checker() -> Any:
    """`disable_safety_checker` of schnell and dev."""
    return switch("skip the safety checker (default false)")


def go_fast() -> Any:
    """`go_fast` of schnell and dev."""
    return switch("fp8 speed-up, not repeatable with a seed (default true)")


def megapixels() -> Any:
    """`megapixels` of schnell and dev."""
    return choice("approximate size (default '1')", *get_args(Megapixels))
