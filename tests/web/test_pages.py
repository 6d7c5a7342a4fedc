"""The public pages (DESIGN §9) as HTTP sees them: content, languages, formats, 404s,
headers, escaping, QR codes and seals. tests/web/test_browser.py drives them in Chromium."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

from app.runtime import Runtime
from app.services.agencies import add_agency
from app.web import i18n
from app.web.rendering import content_security_policy, origin_of
from tests.support.orders import OTHER_BUYER_RUC, order
from tests.support.pages import ACTA_PDF, HOSTILE, HOSTILE_URL, Ledger, populate

pytestmark = [pytest.mark.db, pytest.mark.chain, pytest.mark.e2e]

API_CSP = "default-src 'none'; frame-ancestors 'none'"


@pytest.fixture
def ledger(runtime: Runtime, client: TestClient) -> Ledger:
    return populate(client, runtime)


class Page(HTMLParser):
    """What a page is made of: its text, scripts, links and any inline handler or style."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.links: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.elements.append((tag, found))
        self.inline += [f"{tag} {name}" for name, _ in attrs if name.startswith("on")]
        if "style" in found:
            self.inline.append(f"{tag} style")
        if tag == "style":
            self.inline.append("style element")
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script")
        self.text.append(data)

    @property
    def all_text(self) -> str:
        # ASCII white space only: amounts keep Babel's no-break space (S/\xa05,796.99).
        return re.sub(r"[ \t\r\n\f]+", " ", "".join(self.text))

    def with_attribute(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for _, attrs in self.elements if name in attrs]


def page(client: TestClient, path: str, status: int = 200, **kwargs: Any) -> Page:
    response = client.get(path, **kwargs)
    assert response.status_code == status, (path, response.status_code, response.text[:500])
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    found = Page(response.text)
    assert found.inline == [], (path, found.inline)
    assert all(s.get("src", "").startswith("/static/") for s in found.scripts), found.scripts
    return found


def test_the_home_page_searches_and_shows_the_ledger(client: TestClient, ledger: Ledger) -> None:
    home = page(client, "/")
    assert ledger.order["order_number"] in home.all_text
    assert "Últimas órdenes" in home.all_text and "S/\xa05,796.99" in home.all_text
    html = client.get("/").text
    # 4 records of the order's history, 4 other orders, in one batch
    assert '<dd data-state="records">8</dd>' in html and '<dd data-state="batches">1</dd>' in html
    assert "Hardhat (31337)" in home.all_text and "Lote 1" in home.all_text

    number, ruc = ledger.order["order_number"], ledger.order["buyer"]["ruc"]
    found = client.get("/", params={"q": number, "ruc": ruc}, follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == ledger.order_path
    assert (
        client.get("/", params={"q": f"{ruc} {number}"}, follow_redirects=False).headers["location"]
        == ledger.order_path
    )
    by_hash = client.get(
        "/", params={"q": ledger.history[2].upper().replace("0X", "0x")}, follow_redirects=False
    )
    assert by_hash.headers["location"] == f"/r/{ledger.history[2]}"
    listed = page(client, f"/?q={ruc}")
    assert listed.all_text.count("OCAM-") >= 5 and f"/o/{ruc}/{number}" in listed.links
    acta = hashlib.sha256(ACTA_PDF).hexdigest()
    bound = page(client, f"/?q={acta}")
    assert f"/r/{ledger.history[2]}" in bound.links and "Acta de conformidad" in bound.all_text


def test_an_order_number_alone_goes_to_its_order_lists_its_buyers_or_says_there_is_none(
    client: TestClient, ledger: Ledger, runtime: Runtime
) -> None:
    number = ledger.order["order_number"]
    # One buyer used it: straight to the order, as with the buyer's RUC. Its events carry
    # the number too (three of them here), and are not orders of their own.
    alone = client.get("/", params={"q": number}, follow_redirects=False)
    assert alone.status_code == 303 and alone.headers["location"] == ledger.order_path

    # None did: the search page says so (a search, like a RUC with no orders, not a 404).
    none = page(client, "/?q=OCAM-1999-1-1-0")
    assert "No existe ninguna orden de compra con el número OCAM-1999-1-1-0." in none.all_text
    assert not [link for link in none.links if link.endswith("/OCAM-1999-1-1-0")]
    english = page(client, "/?q=OCAM-1999-1-1-0", headers={"Accept-Language": "en"})
    assert "There is no purchase order numbered OCAM-1999-1-1-0." in english.all_text

    # Another buyer numbers an order the same way (a number is unique per buyer only):
    # both are listed, newest issued first, and the visitor chooses.
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=OTHER_BUYER_RUC, name="MUNICIPALIDAD").api_key
    other = order(0, buyer_ruc=OTHER_BUYER_RUC, order_number=number)
    other["buyer"]["name"] = "MUNICIPALIDAD PROVINCIAL DEL CUSCO"
    other["issued_at"] = "2026-02-05T10:00:00-05:00"
    posted = client.post(
        "/v1/purchase-orders", json=other, headers={"Authorization": f"Bearer {key}"}
    )
    assert posted.status_code == 202, posted.text
    several = client.get("/", params={"q": number})
    assert several.status_code == 200
    results = Page(several.text.split('id="results">', 1)[1].split("</section>", 1)[0])
    assert f"El número de orden {number} lo usan varias entidades compradoras" in results.all_text
    assert results.links == [f"/o/{OTHER_BUYER_RUC}/{number}", ledger.order_path]
    assert "MUNICIPALIDAD PROVINCIAL DEL CUSCO" in results.all_text
    assert "MINISTERIO PÚBLICO-GERENCIA ADMINISTRATIVA DE SAN MARTÍN" in results.all_text
    assert "pendiente" in results.all_text and "final" in results.all_text
    # With the buyer's RUC it is still one order.
    chosen = client.get("/", params={"q": number, "ruc": OTHER_BUYER_RUC}, follow_redirects=False)
    assert chosen.headers["location"] == f"/o/{OTHER_BUYER_RUC}/{number}"

    # A RUC that is not one (not 11 digits) is neither: the page says what it searches.
    malformed = page(client, "/", params={"q": number, "ruc": "2060"})
    assert "Busque un número de orden (con el RUC de 11 dígitos" in malformed.all_text


def test_an_order_page_shows_parties_amounts_items_documents_and_its_history(
    client: TestClient, ledger: Ledger
) -> None:
    shown = page(client, ledger.order_path)
    text = shown.all_text
    for expected in (
        "MINISTERIO PÚBLICO-GERENCIA ADMINISTRATIVA DE SAN MARTÍN",
        "FACUNDO SALAS TELLY CESAR",
        "S/\xa04,912.70",  # subtotal, as Peruvians read it
        "S/\xa0884.29",
        "PAPEL BOND 75 G/M2 TAMAÑO A4 X 500 HOJAS",
        "Orden electrónica",
        "Conformidad del área usuaria",
        "SIAF 2026-0001234",
        # 2026-01-31T09:57:50-05:00, in Peru's time and Spanish
        "31 ene 2026, 9:57:50",
    ):
        assert expected in text.replace("ene.", "ene"), expected
    timeline = shown.with_attribute("data-seq")
    assert [a["data-seq"] for a in timeline] == ["0", "1", "2", "3"]
    assert [a["data-type"] for a in timeline] == ["issued", "accepted", "delivered", "paid"]
    assert all(f"/r/{h}" in shown.links for h in ledger.history)
    assert "/b/1" in shown.links
    assert text.count("final") >= 4


def test_record_and_batch_pages(client: TestClient, ledger: Ledger, runtime: Runtime) -> None:
    record = page(client, f"/r/{ledger.history[3]}")
    assert "S/\xa05,796.99" in record.all_text and "Pagado" in record.all_text
    steps = [a["data-step"] for a in record.with_attribute("data-step")]
    assert steps == [
        "record",
        "leaf",
        "proof",
        "anchor.chain",
        "anchor.contract",
        "anchor.block",
        "anchor.transaction",
        "anchor.event",
        "anchor.root",
        "anchor.confirmations",
    ]
    (root,) = record.with_attribute("data-verify-root")
    assert root["data-rpc-allowed"] == runtime.settings.rpc_url
    assert root["data-record-url"] == f"/v1/records/{ledger.history[3]}"
    assert f"/r/{ledger.history[3]}/sello.svg" in record.links
    assert ledger.order_path in record.links and "/b/1" in record.links

    batch = page(client, "/b/1")
    assert "Lote 1" in batch.all_text and "Hardhat (31337)" in batch.all_text
    assert all(f"/r/{h}" in batch.links for h in [*ledger.history, ledger.victim_hash])

    def records(shown: Page) -> list[str]:
        return [link for link in shown.links if link.startswith("/r/")]

    assert len(records(batch)) == 8
    assert len(records(page(client, "/b/1?from=3"))) == 5


def test_spanish_first_english_too_and_a_visible_switch(client: TestClient, ledger: Ledger) -> None:
    spanish = client.get(ledger.order_path)
    assert spanish.headers["content-language"] == "es" and 'lang="es-PE"' in spanish.text
    assert "Historial" in spanish.text and 'href="/o/' in spanish.text
    assert "?lang=en" in spanish.text  # the switch
    english = client.get(ledger.order_path, headers={"Accept-Language": "en-GB,en;q=0.9,es;q=0.5"})
    assert english.headers["content-language"] == "en" and "History" in english.text
    assert "Jan 31, 2026, 9:57:50" in english.text and "S/\xa05,796.99" in english.text
    # Chosen with the switch: remembered in a cookie over the browser's languages.
    chosen = client.get(f"{ledger.order_path}?lang=en", headers={"Accept-Language": "es"})
    assert chosen.headers["content-language"] == "en"
    assert "lang=en" in chosen.headers["set-cookie"]
    again = client.get(ledger.order_path, headers={"Accept-Language": "es"})
    assert again.headers["content-language"] == "en"
    client.cookies.clear()
    fallback = client.get("/", headers={"Accept-Language": "fr-FR,de;q=0.8"})
    assert fallback.headers["content-language"] == "es"
    assert "Vary" in fallback.headers and "Accept-Language" in fallback.headers["vary"]


def test_unknown_order_record_batch_are_html_404s_and_the_api_is_unchanged(
    client: TestClient, ledger: Ledger
) -> None:
    for path, says in (
        (f"/o/{ledger.order['buyer']['ruc']}/OCAM-1999-1-1-0", "OCAM-1999-1-1-0"),
        ("/r/0x" + "cd" * 32, "0x" + "cd" * 32),
        ("/r/0xnope", "0xnope"),
        ("/r/0x" + "cd" * 32 + "/qr.svg", "0x" + "cd" * 32),
        ("/b/999", "999"),
        ("/b/abc", "abc"),
        ("/o/20600027426", "/o/20600027426"),
    ):
        shown = page(client, path, status=404)
        assert "No encontrado" in shown.all_text and says in shown.all_text, path
    english = page(client, "/b/999", status=404, headers={"Accept-Language": "en"})
    assert "There is no batch 999." in english.all_text
    api = client.get("/v1/receipts/0x" + "cd" * 32)
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/batches/999").headers["content-type"] == "application/problem+json"
    unknown = client.get("/nothing-here")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


def test_headers_per_part_of_the_site(client: TestClient, ledger: Ledger, runtime: Runtime) -> None:
    assert client.get("/v1/batches").headers["content-security-policy"] == API_CSP
    assert (
        client.get(f"/v1/records/{ledger.final_hash}").headers["content-security-policy"] == API_CSP
    )
    rpc_origin = origin_of(runtime.settings.rpc_url)
    assert rpc_origin and rpc_origin.startswith("http://127.0.0.1:")
    for path in ("/", ledger.order_path, f"/r/{ledger.final_hash}", "/b/1", "/verificar"):
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        assert policy.count("content-security-policy") == 0
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["connect-src"] in ("'self'", f"'self' {rpc_origin}"), path
        assert response.headers["x-frame-options"] == "DENY"
        assert len(response.headers.get_list("content-security-policy")) == 1
    verifying = client.get(f"/r/{ledger.final_hash}").headers["content-security-policy"]
    assert f"connect-src 'self' {rpc_origin};" in verifying
    # A visitor's own endpoint joins connect-src on the page that asked for it ...
    own = client.get(
        f"/r/{ledger.final_hash}", params={"rpc": "https://rpc.example.org:8443/v1/key"}
    )
    assert "connect-src 'self' http" in own.headers["content-security-policy"]
    assert "https://rpc.example.org:8443" in own.headers["content-security-policy"]
    assert 'value="https://rpc.example.org:8443/v1/key"' in own.text
    # ... but nothing that is not an http(s) origin ever reaches the policy.
    for hostile in (
        "https://a.example; script-src *",
        "javascript:alert(1)",
        "http://a b",
        "'unsafe-inline'",
    ):
        response = client.get("/verificar", params={"rpc": hostile})
        assert response.headers["content-security-policy"] == content_security_policy(
            [rpc_origin]
        ), hostile
    static = client.get("/static/verify.js")
    assert static.status_code == 200 and static.headers["content-type"].startswith(
        "text/javascript"
    )


def test_untrusted_text_from_records_is_shown_as_text(client: TestClient, ledger: Ledger) -> None:
    path = f"/o/{ledger.hostile['buyer']['ruc']}/{ledger.hostile['order_number']}"
    for shown_at in (path, f"/r/{ledger.hostile_hash}", f"/?q={ledger.hostile['buyer']['ruc']}"):
        html = client.get(shown_at).text
        assert "<script>alert" not in html and "<img src=x" not in html, shown_at
        assert (
            "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
            in html
        )
        shown = Page(html)
        assert shown.inline == [] and HOSTILE in shown.all_text, shown_at
    # A document's URL stays inside its attribute.
    assert HOSTILE_URL in Page(client.get(path).text).links


def test_formats_as_peruvians_read_them() -> None:
    assert i18n.money("5796.99", "PEN") == "S/\xa05,796.99"
    assert i18n.money("205395.52") == "S/\xa0205,395.52"
    assert i18n.money("12.00", "USD") == "USD\xa012.00"
    token = i18n.set_language("es")
    try:
        # 14:57:50 UTC is 9:57:50 in Lima, every day of the year.
        assert i18n.when("2026-01-31T14:57:50+00:00").startswith("31 ene. 2026, 9:57:50")
        assert i18n.when(1_769_871_470) == i18n.when("2026-01-31T09:57:50-05:00")
    finally:
        i18n.reset_language(token)
    assert i18n.from_accept_language("en-US,en;q=0.9") == "en"
    assert i18n.from_accept_language("de, en;q=0.2, es;q=0.8") == "es"
    assert i18n.from_accept_language("fr") is None
    assert i18n.choose_language("en", "es", "es") == "en"


def _zbarimg() -> str:
    found = shutil.which("zbarimg")
    if found is None:
        import os

        message = "zbarimg is missing: apt-get install -y zbar-tools (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def decode_qr(png: bytes, tmp_path: Path) -> str:
    image = tmp_path / "qr.png"
    image.write_bytes(png)
    result = subprocess.run(
        [_zbarimg(), "--quiet", "--raw", str(image)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_qr_codes_hold_the_records_absolute_url_and_the_seal_says_what_it_seals(
    client: TestClient, ledger: Ledger, runtime: Runtime, tmp_path: Path
) -> None:
    url = f"{runtime.settings.public_url}/r/{ledger.final_hash}"
    png = client.get(f"/r/{ledger.final_hash}/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert decode_qr(png.content, tmp_path) == url
    svg = client.get(f"/r/{ledger.final_hash}/qr.svg")
    assert svg.headers["content-type"] == "image/svg+xml"
    assert ElementTree.fromstring(svg.content).tag  # noqa: S314 - our own answer == "{http://www.w3.org/2000/svg}svg"

    seal = client.get(f"/r/{ledger.final_hash}/sello.svg")
    assert seal.status_code == 200 and seal.headers["content-type"].startswith("image/svg+xml")
    tree = ElementTree.fromstring(seal.content)  # noqa: S314 - our own answer
    text = " ".join("".join(t.itertext()) for t in tree.iter("{http://www.w3.org/2000/svg}text"))
    receipt = client.get(f"/v1/receipts/{ledger.final_hash}").json()
    assert f"{ledger.final_hash[:10]}…{ledger.final_hash[-4:]}" in text
    assert "Lote 1" in text and "Hardhat (31337)" in text and url in text
    assert i18n.when(receipt["anchor"]["timestamp"]) in text
    assert len(list(tree.iter("{http://www.w3.org/2000/svg}path"))) == 1  # the QR code
    english = client.get(f"/r/{ledger.final_hash}/sello.svg", headers={"Accept-Language": "en"})
    assert "Batch 1" in english.text
