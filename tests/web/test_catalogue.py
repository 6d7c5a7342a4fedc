"""The pages' one message catalogue: every sentence the pages and verify.js can show is in
it, translated to Spanish, with its placeholders intact (app/web/locale/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
from babel.messages.pofile import read_po

from app.web import i18n

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "app" / "web"
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\w+\}")


def extracted() -> set[str]:
    """What `pybabel extract -F app/web/babel.cfg` finds, read here from the sources."""
    sources = [("python", p) for p in sorted(WEB.rglob("*.py"))] + [
        ("jinja2", p) for p in sorted((WEB / "templates").iterdir())
    ]
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found: set[str] = set()
    for method, path in sources:
        for _, message, _, _ in extract_from_file(method, str(path), keywords=keywords):
            found.add(message if isinstance(message, str) else message[0])
    return found


def catalogue(lang: str) -> dict[str, str]:
    with (WEB / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return {m.id: m.string for m in read_po(handle) if m.id and isinstance(m.id, str)}


def test_every_message_is_in_the_catalogue_and_translated_to_spanish() -> None:
    messages = extracted()
    assert len(messages) > 150
    spanish, english = catalogue("es"), catalogue("en")
    with (WEB / "locale" / "messages.pot").open("rb") as handle:
        template = {m.id for m in read_po(handle) if m.id}
    assert messages == template, "run the extraction in app/web/locale/README.md"
    assert set(spanish) == set(english) == messages
    untranslated = sorted(m for m in messages if not spanish[m])
    assert untranslated == []
    for message in messages:
        assert sorted(PLACEHOLDER.findall(spanish[message])) == sorted(
            PLACEHOLDER.findall(message)
        ), message


def test_the_catalogue_loads_and_english_is_the_msgids() -> None:
    assert i18n.translations("es").gettext("Search") == "Buscar"
    assert i18n.translations("en").gettext("Search") == "Search"
