"""Plots as small PNGs, and as images a Markdown text can carry inline.

The Dagster UI renders ``data:image/png;base64`` images in Markdown metadata, so a card or a
drift report shows its plots where the run is looked at; the stored files keep plain names.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

# Dots per inch of every stored plot: sharp enough to read, small enough to inline.
DPI = 90


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (no timestamp or software tag, so the bytes are stable)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def data_uri(image: bytes) -> str:
    """A PNG as a ``data:`` URL."""
    return "data:image/png;base64," + base64.b64encode(image).decode()


def inline(images: Mapping[str, bytes]) -> dict[str, str]:
    """File name -> data URL, for :func:`image` to embed every plot in the text."""
    return {name: data_uri(image) for name, image in images.items()}


def image(alt: str, name: str, urls: Mapping[str, str] | None = None) -> str:
    """A Markdown image of the plot stored as ``name``.

    Args:
        alt: The text shown when the image cannot be.
        name: The plot's file name (beside the Markdown file that names it).
        urls: Where to show each plot from instead (e.g. :func:`inline`'s data URLs).
    """
    return f"![{alt}]({(urls or {}).get(name, name)})"
