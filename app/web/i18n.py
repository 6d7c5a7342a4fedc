"""The pages' languages: one message catalogue (gettext, through Babel), Spanish first.

The msgids are English; ``locale/es/LC_MESSAGES/messages.po`` translates them
to Spanish (the default) and ``locale/en`` keeps them. The ``.po`` files are
the catalogue as shipped: compiled to gettext's binary form in memory when
first used, so there is no build step and no binary file to keep in step.

Amounts are written as Peruvians read them (``S/ 5,796.99``: Babel's es_PE
currency format, in either language) and times in Peru's time (UTC−05:00 all
year), in the visitor's language.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Final, Literal

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from babel.support import Translations

Lang = Literal["es", "en"]
LANGUAGES: Final[tuple[Lang, ...]] = ("es", "en")
DEFAULT_LANGUAGE: Final[Lang] = "es"
LANGUAGE_NAMES: Final[dict[Lang, str]] = {"es": "Español", "en": "English"}
# The Babel locale each language's dates are written in.
DATE_LOCALES: Final[dict[Lang, str]] = {"es": "es_PE", "en": "en_US"}
# Amounts: as Peruvians read them, whatever the page's language.
MONEY_LOCALE: Final = "es_PE"
PERU: Final = timezone(timedelta(hours=-5), "PET")

LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
DOMAIN: Final = "messages"

_language: ContextVar[Lang] = ContextVar("ancla_page_language", default=DEFAULT_LANGUAGE)


@cache
def translations(lang: Lang) -> Translations:
    """The catalogue of ``lang``, read from its .po file (once per process)."""
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=lang, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def current_language() -> Lang:
    return _language.get()


def set_language(lang: Lang) -> object:
    """Make ``lang`` the language of what is rendered in this context; returns a token."""
    return _language.set(lang)


def reset_language(token: object) -> None:
    _language.reset(token)  # type: ignore[arg-type]


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "translated where shown"
    """Mark ``message`` for the catalogue; it is translated when a page shows it."""
    return message


def gettext(message: str) -> str:
    return translations(current_language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current_language()).ngettext(singular, plural, n)


def as_language(value: str | None) -> Lang | None:
    """``value`` if it names a language of the pages (``es``, ``en``, ``es-PE``...)."""
    if not value:
        return None
    primary = value.strip().lower().replace("_", "-").split("-", 1)[0]
    for lang in LANGUAGES:
        if primary == lang:
            return lang
    return None


_RANGE = re.compile(
    r"^\s*([A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$"
)


def from_accept_language(header: str | None) -> Lang | None:
    """The visitor's most preferred language among the pages' (RFC 9110 §12.5.4)."""
    if not header:
        return None
    ranked: list[tuple[float, int, Lang]] = []
    for position, part in enumerate(header.split(",")[:32]):
        found = _RANGE.match(part)
        if not found:
            continue
        try:
            quality = float(found.group(2)) if found.group(2) is not None else 1.0
        except ValueError:
            continue
        lang = as_language(found.group(1))
        if lang is not None and quality > 0:
            ranked.append((-quality, position, lang))
    return min(ranked)[2] if ranked else None


def choose_language(asked: str | None, remembered: str | None, accept_language: str | None) -> Lang:
    """``?lang=`` first, then the visitor's earlier choice (a cookie), then Accept-Language."""
    return (
        as_language(asked)
        or as_language(remembered)
        or from_accept_language(accept_language)
        or DEFAULT_LANGUAGE
    )


def money(amount: str | Decimal | None, currency: str | None = "PEN") -> str:
    """``S/ 5,796.99`` (soles), ``USD 12.00``...: Babel's es_PE format, exact digits."""
    if amount is None or amount == "":
        return "—"
    try:
        value = Decimal(amount)
    except (InvalidOperation, ValueError):
        return str(amount)
    return format_currency(value, currency or "PEN", locale=MONEY_LOCALE)


def _as_datetime(value: str | int | datetime) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: str | int | datetime | None) -> str:
    """A moment in Peru's time, in the page's language (``31 ene. 2026, 9:57:50 a. m.``)."""
    if value is None or value == "":
        return "—"
    moment = _as_datetime(value)
    if moment is None:
        return str(value)
    return format_datetime(moment, "medium", tzinfo=PERU, locale=DATE_LOCALES[current_language()])


def iso_peru(value: str | int | datetime | None) -> str:
    """The same moment as ISO 8601 with Peru's offset (for ``<time datetime>``)."""
    moment = None if value is None or value == "" else _as_datetime(value)
    return "" if moment is None else moment.astimezone(PERU).isoformat()


def short_hash(value: str | None) -> str:
    """``0x1234abcd…9f0e``: enough to recognise a hash, with the whole one beside it."""
    if not value:
        return "—"
    return value if len(value) <= 18 else f"{value[:10]}…{value[-4:]}"
