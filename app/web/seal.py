"""QR codes and the printable seal of a record (``/r/{hash}/qr.svg``, ``qr.png``, ``sello.svg``).

A QR code holds the absolute URL of the record's page, built from
``ANCLA_PUBLIC_URL``: printed on an order's PDF, it leads a phone to the page
that verifies the record in the phone's own browser. Made with segno (pure
Python, PNG included).
"""

from __future__ import annotations

from io import BytesIO
from typing import Final

import segno
from markupsafe import Markup

# Medium error correction: a seal stays readable with a stain or a fold.
_ERROR: Final = "m"

CHAIN_NAMES: Final[dict[int, str]] = {
    1: "Ethereum",
    10: "OP Mainnet",
    137: "Polygon",
    8453: "Base",
    42161: "Arbitrum One",
    80002: "Polygon Amoy",
    11155111: "Sepolia",
    31337: "Hardhat",
}


def chain_name(chain_id: int | None) -> str:
    """``Sepolia (11155111)``; a chain without a name here is shown by its id alone."""
    if chain_id is None:
        return "—"
    name = CHAIN_NAMES.get(chain_id)
    return f"{name} ({chain_id})" if name else str(chain_id)


def record_url(public_url: str, record_hash: str) -> str:
    """The absolute URL of ``/r/{hash}`` (``record_hash`` already checked: 0x + 64 hex)."""
    return f"{public_url.rstrip('/')}/r/{record_hash}"


def _code(url: str) -> segno.QRCode:
    return segno.make(url, error=_ERROR, micro=False)


def qr_svg(url: str) -> bytes:
    out = BytesIO()
    _code(url).save(out, kind="svg", scale=8, border=4, xmldecl=True, title=url)
    return out.getvalue()


def qr_png(url: str) -> bytes:
    out = BytesIO()
    _code(url).save(out, kind="png", scale=8, border=4)
    return out.getvalue()


def qr_inline(url: str, size: int) -> tuple[Markup, int]:
    """The QR code as an ``<svg>`` element for the seal, about ``size`` px wide, and its
    exact width. Markup: segno writes only the code's path, from our own URL."""
    code = _code(url)
    modules = int(code.symbol_size(scale=1, border=0)[0])
    scale = max(1, size // modules)
    return Markup(code.svg_inline(scale=scale, border=0)), modules * scale  # noqa: S704
