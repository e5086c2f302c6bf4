"""The fake's public model catalogue, `GET /api/models`, in CometAPI's shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["catalogue_json"]


def catalogue_json(prices: Mapping[str, float]) -> dict[str, Any]:
    """A model catalogue in the shape of CometAPI's documented example."""
    records = [
        {
            "id": model,
            "provider": "Black Forest Labs",
            "model_type": "image",
            "features": ["text-to-image"],
            "pricing": {
                "currency": "USD",
                "input": None,
                "output": None,
                "per_request": usd,
                "per_second": None,
            },
        }
        for model, usd in prices.items()
    ]
    return {
        "success": True,
        "page": 0,
        "page_size": 0,
        "total": len(records),
        "data": records,
    }
