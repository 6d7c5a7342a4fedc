"""Rendering the pages: Jinja2 (autoescaped), the visitor's language, and their headers.

Every page is rendered here, so every page gets the same Content-Security-
Policy: scripts and styles only from this service (``'self'``, no inline
script, no inline style, no event handler attributes), images from here,
``connect-src`` this service and the chain's public JSON-RPC endpoint (the one
a visitor gave instead, on the page that asked for it), no framing. Records
are untrusted text: autoescaping is on for every template, and no template
marks record content safe.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.web import i18n, seal
from app.web.verify_messages import STEP_LABELS, STEPS, catalogue

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
STATIC: Final = Path(__file__).resolve().parent / "static"
LANG_COOKIE: Final = "lang"
_ONE_YEAR: Final = 365 * 24 * 3600

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "svg", "xml"], default_for_string=True),
    undefined=StrictUndefined,
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.install_gettext_callables(  # type: ignore[attr-defined]
    i18n.gettext, i18n.ngettext, newstyle=True
)


@cache
def static_url(name: str) -> str:
    """``/static/{name}`` with a digest of its content, so a new release is never stale."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


environment.filters.update(
    money=i18n.money,
    when=i18n.when,
    iso=i18n.iso_peru,
    short=i18n.short_hash,
    chain=seal.chain_name,
    quote=lambda value: quote(str(value), safe=""),
)
environment.globals.update(
    static=static_url,
    steps=STEPS,
    step_labels=STEP_LABELS,
    verify_catalogue=lambda: catalogue(i18n.gettext),
)

# An origin a policy may name: scheme, a host of letters, digits, dots and
# hyphens, an optional port. Anything else (quotes, spaces, semicolons) could
# change the policy, so it is never written into it.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, or None if it is not one a policy can name."""
    if not url or len(url) > 2000 or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host or not _HOST.fullmatch(host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def content_security_policy(connect_origins: Iterable[str | None] = ()) -> str:
    connect = ["'self'", *sorted({o for o in connect_origins if o})]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {' '.join(connect)}",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def page_language(request: Request) -> tuple[i18n.Lang, bool]:
    """(the language to render in, whether the visitor chose it just now with ``?lang=``)."""
    asked = request.query_params.get("lang")
    lang = i18n.choose_language(
        asked, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )
    return lang, i18n.as_language(asked) is not None


def _relative(request: Request, **changes: str) -> str:
    url = request.url.include_query_params(**changes)
    return url.path + (f"?{url.query}" if url.query else "")


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    connect_origins: Iterable[str | None] = (),
    media_type: str = "text/html",
) -> HTMLResponse:
    """``template`` in the visitor's language, with the pages' headers."""
    lang, chosen = page_language(request)
    token = i18n.set_language(lang)
    try:
        html = environment.get_template(template).render(
            {
                "lang": lang,
                "languages": [
                    {
                        "lang": other,
                        "name": i18n.LANGUAGE_NAMES[other],
                        "url": _relative(request, lang=other),
                    }
                    for other in i18n.LANGUAGES
                    if other != lang
                ],
                "path": request.url.path,
                **context,
            }
        )
    finally:
        i18n.reset_language(token)
    response = HTMLResponse(html, status_code=status_code, media_type=media_type)
    response.headers["content-security-policy"] = content_security_policy(connect_origins)
    response.headers["content-language"] = lang
    response.headers["vary"] = "Accept-Language, Cookie"
    response.headers["cache-control"] = "no-cache"
    if chosen:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=_ONE_YEAR, path="/", samesite="lax", httponly=True
        )
    return response
