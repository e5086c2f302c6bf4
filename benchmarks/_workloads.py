"""The benchmark workloads: which models, how many predictions, how many at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["WORKLOADS", "ModelMix", "Workload", "build_items"]


@dataclass(frozen=True)
class ModelMix:
    """One model's share of a workload and the latency the fake gives it."""

    model: str
    share: float
    low: float
    high: float

    @property
    def latency_arg(self) -> str:
        """The fake server's ``--latency MODEL=SPEC`` value."""
        return f"{self.model}=uniform:{self.low:g}:{self.high:g}"


@dataclass(frozen=True)
class Workload:
    """A named workload: *total* predictions over *mix*, *concurrency* at once."""

    name: str
    title: str
    total: int
    concurrency: int
    mix: tuple[ModelMix, ...]

    def scaled(self, factor: float) -> Workload:
        """The same workload with counts and concurrency multiplied by *factor*."""
        if factor == 1.0:
            return self
        return Workload(
            name=self.name,
            title=self.title,
            total=max(1, round(self.total * factor)),
            concurrency=max(1, round(self.concurrency * factor)),
            mix=self.mix,
        )


_FLUX = "black-forest-labs/"

WORKLOADS: dict[str, Workload] = {
    "mixed": Workload(
        name="mixed",
        title="mixed FLUX",
        total=2_000,
        concurrency=200,
        mix=(
            ModelMix(_FLUX + "flux-schnell", 0.5, 1.0, 3.0),
            ModelMix(_FLUX + "flux-dev", 0.3, 4.0, 8.0),
            ModelMix(_FLUX + "flux-pro", 0.2, 8.0, 14.0),
        ),
    ),
    "scale": Workload(
        name="scale",
        title="scale",
        total=10_000,
        concurrency=1_000,
        mix=(ModelMix(_FLUX + "flux-schnell", 1.0, 1.0, 3.0),),
    ),
}


def build_items(workload: Workload) -> list[dict[str, Any]]:
    """The workload's inputs, models interleaved deterministically, prompts unique.

    Each position goes to the model furthest behind its share so far (ties to the
    first listed), so every prefix of the list has the intended mix: clients that
    start predictions in input order all see the same blend at every moment.
    """
    assigned = [0] * len(workload.mix)
    items: list[dict[str, Any]] = []
    for index in range(workload.total):
        deficits = [
            mix.share * (index + 1) - done
            for mix, done in zip(workload.mix, assigned, strict=True)
        ]
        pick = max(range(len(deficits)), key=lambda k: (deficits[k], -k))
        assigned[pick] += 1
        model = workload.mix[pick].model
        prompt = f"{model.rpartition('/')[2]} #{index}: a paper boat on a still lake"
        items.append({"model": model, "input": {"prompt": prompt}})
    return items
