"""The public pages in a real browser (Debian's chromium, through Playwright), served on a
real port against a Hardhat node of its own: search, an order's history, verification in the
browser passing and failing at the named step, a dropped file, a phone's width, no
JavaScript, both languages. Writes the README's two screenshots (docs/screenshots/), the
same bytes on every run: fixed records, a chain of its own (same blocks) and a fixed
public RPC address, so running the tests leaves the tree clean.

Every page is opened 390 px wide (a phone's) and checked for horizontal overflow; every
test fails on a Content-Security-Policy violation or a JavaScript dialog.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from sqlalchemy import update

from app.main import create_app
from app.models import Record
from app.runtime import Runtime
from app.settings import Settings
from ledger.chain import ChainClient
from tests.support.browser import ChainIdProxy, chromium, missing
from tests.support.database import fresh_database
from tests.support.hardhat import DEV_KEY_0, HardhatNode, free_port, start_node
from tests.support.live import live_server
from tests.support.pages import ACTA_PDF, HOSTILE, ORDER_PDF, Ledger, populate

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.db, pytest.mark.chain]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The JSON-RPC endpoint the pages give browsers (ANCLA_PUBLIC_RPC_URL): a fixed address,
# which every browser context carries to the test node (see make_page), so that the
# verification's screenshot reads the same whatever port the node got.
PUBLIC_RPC_URL = "http://127.0.0.1:8545"
PHONE = {"width": 390, "height": 844}
VERIFIED = '[data-steps][data-verification="pass"]'
NOT_VERIFIED = '[data-steps][data-verification="fail"]'


@dataclass
class Site:
    base: str
    runtime: Runtime
    ledger: Ledger
    rpc_url: str


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatNode]:
    """A test chain of this module's own: on the session's node, the anchor's block
    number (shown in the verification's screenshot) would depend on the tests before."""
    started = start_node(tmp_path_factory.mktemp("hardhat-pages"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def site(node: HardhatNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Ancla on a real port (its pages and API), anchored on the test chain (SQLite)."""
    chain = ChainClient(node.url)
    address, _ = chain.deploy_registry(Account.from_key(DEV_KEY_0))
    with fresh_database("sqlite", tmp_path_factory.mktemp("pages")) as url:
        port = free_port()
        runtime = Runtime.create(
            Settings(
                environment="test",
                database_url=url,
                rpc_url=node.url,
                public_rpc_url=PUBLIC_RPC_URL,
                contract_address=address,
                signer_key=DEV_KEY_0,
                batch_max_size=100,
                batch_max_age_seconds=3600,
                rate_limit_per_second=0,
                public_url=f"http://127.0.0.1:{port}",
            )
        )
        try:
            with live_server(create_app(runtime=runtime), port=port) as base:
                with httpx.Client(base_url=base) as client:
                    ledger = populate(client, runtime)
                yield Site(base, runtime, ledger, node.url)
        finally:
            runtime.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


class Watched:
    """A page, and everything it should not have done: CSP violations, dialogs, errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "status of 404" not in message.text:
            self.problems.append(f"console: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def fits(self) -> None:
        """No horizontal overflow at the phone's width."""
        width = self.page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (self.page.url, width)


@pytest.fixture
def make_page(browser: Any, site: Site) -> Iterator[Any]:
    contexts: list[Any] = []
    watched: list[Watched] = []

    def to_the_node(route: Any) -> None:
        # The browser asked PUBLIC_RPC_URL; the node answers (its CORS headers too).
        route.fulfill(response=route.fetch(url=site.rpc_url))

    def make(**options: Any) -> Watched:
        context = browser.new_context(
            viewport=PHONE, locale=options.pop("locale", "es-PE"), **options
        )
        context.route(lambda url: url.startswith(PUBLIC_RPC_URL), to_the_node)
        contexts.append(context)
        page = Watched(context.new_page())
        page.page.set_default_timeout(20_000)
        watched.append(page)
        return page

    yield make
    problems = [problem for page in watched for problem in page.problems]
    for context in contexts:
        context.close()
    assert problems == []


def steps_of(page: Any) -> dict[str, str]:
    return page.eval_on_selector_all(
        "[data-steps] [data-step]",
        "items => Object.fromEntries(items.map(i => [i.dataset.step, i.dataset.result]))",
    )


def run_verification(page: Any) -> str:
    page.click("[data-verify-form] button[type=submit]")
    page.wait_for_selector(f"{VERIFIED}, {NOT_VERIFIED}, [data-steps][data-verification=error]")
    outcome: str = page.get_attribute("[data-steps]", "data-verification")
    return outcome


def test_search_finds_an_order_and_its_page_shows_the_history(site: Site, make_page: Any) -> None:
    watched = make_page()
    page = watched.page
    page.goto(f"{site.base}/")
    watched.fits()
    page.fill("#q", site.ledger.order["order_number"])
    page.fill("#ruc", site.ledger.order["buyer"]["ruc"])
    page.click("form.search button[type=submit]")
    page.wait_for_url(f"{site.base}{site.ledger.order_path}")
    timeline = page.locator("[data-history] > li")
    assert timeline.count() == 4
    assert [timeline.nth(i).get_attribute("data-type") for i in range(4)] == [
        "issued",
        "accepted",
        "delivered",
        "paid",
    ]
    history = page.inner_text("[data-history]")
    assert "Aceptada por el proveedor" in history and "SIAF 2026-0001234" in history
    assert "S/\xa05,796.99" in page.inner_text("main")
    watched.fits()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("section.history").screenshot(path=str(SCREENSHOTS / "order-history.png"))


def test_an_order_number_alone_lands_on_its_order(site: Site, make_page: Any) -> None:
    # Without the buyer's RUC: the number is the only order of that number in the ledger.
    watched = make_page()
    page = watched.page
    page.goto(f"{site.base}/")
    page.fill("#q", site.ledger.order["order_number"])
    assert page.input_value("#ruc") == ""
    page.click("form.search button[type=submit]")
    page.wait_for_url(f"{site.base}{site.ledger.order_path}")
    assert page.inner_text("main h1") == site.ledger.order["order_number"]
    assert page.locator("[data-history] > li").count() == 4
    watched.fits()


def test_a_final_record_verifies_in_the_browser_from_its_qr_code(
    site: Site, make_page: Any, tmp_path: Path
) -> None:
    record_hash = site.ledger.final_hash
    image = tmp_path / "qr.png"
    image.write_bytes(httpx.get(f"{site.base}/r/{record_hash}/qr.png").content)
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        missing("zbarimg is not installed: apt-get install -y zbar-tools")
    decoded = subprocess.run(
        [str(zbarimg), "--quiet", "--raw", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert decoded == f"{site.base}/r/{record_hash}"

    watched = make_page()
    page = watched.page
    page.goto(decoded)
    assert run_verification(page) == "pass", page.inner_text("[data-verify-root]")
    assert set(steps_of(page).values()) == {"pass"} and len(steps_of(page)) == 10
    assert "Verificado" in page.inner_text("[data-outcome]")
    trusted = page.inner_text('[data-step="anchor.root"] [data-trusted]')
    assert PUBLIC_RPC_URL in trusted
    watched.fits()
    page.locator("section.verify").screenshot(path=str(SCREENSHOTS / "verification.png"))


def test_altered_record_bytes_fail_at_the_record_step(site: Site, make_page: Any) -> None:
    victim = site.ledger.victim_hash
    stored = httpx.get(f"{site.base}/v1/records/{victim}").content
    altered = stored.replace(b'"total":"', b'"total":"9', 1)
    assert altered != stored
    with site.runtime.session_factory() as session:
        session.execute(update(Record).where(Record.hash == victim).values(canonical=altered))
        session.commit()
    watched = make_page()
    page = watched.page
    page.goto(f"{site.base}/r/{victim}")
    assert run_verification(page) == "fail"
    steps = steps_of(page)
    assert steps["record"] == "fail" and {steps[s] for s in steps if s != "record"} == {"skipped"}
    failing = page.locator('[data-step="record"]')
    assert victim in failing.locator("[data-expected]").inner_text()
    assert re.fullmatch(r"0x[0-9a-f]{64}", failing.locator("[data-actual]").inner_text())
    assert "No verificado" in page.inner_text("[data-outcome]")
    watched.fits()


def test_an_endpoint_of_another_chain_fails_at_anchor_chain(site: Site, make_page: Any) -> None:
    proxy = ChainIdProxy(site.rpc_url, chain_id=137)
    try:
        watched = make_page()
        page = watched.page
        page.goto(f"{site.base}/r/{site.ledger.final_hash}")
        # The visitor's own endpoint: the page is asked again so its policy may reach it.
        page.fill("#rpc", proxy.url)
        assert run_verification(page) == "fail"
        assert f"rpc={proxy.url}".replace(":", "%3A").replace("/", "%2F") in page.url
        steps = steps_of(page)
        assert [steps[s] for s in ("record", "leaf", "proof")] == ["pass"] * 3
        assert steps["anchor.chain"] == "fail"
        chain_step = page.locator('[data-step="anchor.chain"]')
        assert chain_step.locator("[data-expected]").inner_text() == "31337"
        assert chain_step.locator("[data-actual]").inner_text() == "137"
        assert proxy.url in chain_step.locator("[data-trusted]").inner_text()
        assert "eth_chainId" in proxy.calls
        watched.fits()
    finally:
        proxy.close()


def test_a_pasted_receipt_verifies_and_fails_at_proof_when_its_proof_is_cut(
    site: Site, make_page: Any
) -> None:
    record_hash = site.ledger.other_hashes[0]
    receipt = httpx.get(f"{site.base}/v1/receipts/{record_hash}").json()
    record = httpx.get(f"{site.base}/v1/records/{record_hash}").text
    assert len(receipt["merkle"]["proof"]) >= 2
    watched = make_page()
    page = watched.page
    page.goto(f"{site.base}/verificar")
    page.fill("#receipt", json.dumps(receipt, indent=2))
    page.fill("#record", record)
    assert run_verification(page) == "pass"

    cut = {**receipt, "merkle": {**receipt["merkle"], "proof": receipt["merkle"]["proof"][:-1]}}
    page.fill("#receipt", json.dumps(cut))
    assert run_verification(page) == "fail"
    steps = steps_of(page)
    assert [steps[s] for s in ("record", "leaf", "proof")] == ["pass", "pass", "fail"]
    assert steps["anchor.chain"] == "skipped"
    assert "8" in page.inner_text('[data-step="proof"] [data-detail]')  # a batch of 8 records
    watched.fits()

    # A pending receipt stops where the CLI stops: at "anchor", after the record.
    pending = {**receipt, "status": "pending", "merkle": None, "batch": None, "anchor": None}
    page.fill("#receipt", json.dumps(pending))
    assert run_verification(page) == "fail"
    steps = steps_of(page)
    assert (steps["record"], steps["anchor"], steps["leaf"]) == ("pass", "fail", "skipped")
    assert "pendiente" in page.inner_text('[data-step="anchor"] [data-detail]')


def test_a_chosen_or_dropped_file_finds_the_records_that_bind_it(
    site: Site, make_page: Any
) -> None:
    watched = make_page()
    page = watched.page
    page.goto(f"{site.base}/")
    page.set_input_files(
        "#document", files=[{"name": "acta.pdf", "mimeType": "application/pdf", "buffer": ACTA_PDF}]
    )
    page.wait_for_selector('[data-document-result][data-state="found"]')
    found = page.locator("[data-document-result] [data-record-hash]")
    assert [found.nth(i).get_attribute("data-record-hash") for i in range(found.count())] == [
        site.ledger.history[2]
    ]

    page.goto(f"{site.base}/verificar")
    dropped = page.evaluate_handle(
        """bytes => {
            const data = new DataTransfer();
            const file = new File([new Uint8Array(bytes)], "orden.pdf", {type: "application/pdf"});
            data.items.add(file);
            return data;
        }""",
        list(ORDER_PDF),
    )
    page.dispatch_event("[data-document-drop]", "drop", {"dataTransfer": dropped})
    page.wait_for_selector('[data-document-result][data-state="found"]')
    link = page.locator("[data-document-result] [data-record-hash] a.hash")
    assert link.get_attribute("href") == f"/r/{site.ledger.final_hash}"
    link.click()
    page.wait_for_url(f"{site.base}/r/{site.ledger.final_hash}")
    watched.fits()


def test_every_page_fits_a_phone(site: Site, make_page: Any) -> None:
    watched = make_page()
    for path in (
        "/",
        site.ledger.order_path,
        f"/r/{site.ledger.history[2]}",
        "/b/1",
        "/verificar",
        f"/?q={site.ledger.order['buyer']['ruc']}",
        "/r/0xnope",
    ):
        watched.page.goto(f"{site.base}{path}")
        watched.fits()


def test_pages_work_without_javascript(site: Site, make_page: Any) -> None:
    watched = make_page(java_script_enabled=False)
    page = watched.page
    page.goto(f"{site.base}/")
    page.fill("#q", f"{site.ledger.order['buyer']['ruc']} {site.ledger.order['order_number']}")
    page.click("form.search button[type=submit]")
    page.wait_for_url(f"{site.base}{site.ledger.order_path}")
    assert page.locator("[data-history] > li").count() == 4
    page.click(f'a[href="/r/{site.ledger.history[3]}"]')
    page.wait_for_url(f"{site.base}/r/{site.ledger.history[3]}")
    main = page.inner_text("main")
    assert '"type":"paid"' in main and site.ledger.history[3] in main
    assert "requiere JavaScript" in main  # says what needs it, and what to run instead
    assert page.locator("img.qr").evaluate("img => img.naturalWidth") > 0
    watched.fits()


def test_spanish_and_english(site: Site, make_page: Any) -> None:
    watched = make_page(locale="en-US")
    page = watched.page
    page.goto(f"{site.base}{site.ledger.order_path}")
    assert page.locator("html").get_attribute("lang") == "en"
    assert "History" in page.inner_text("main") and "Jan 31, 2026" in page.inner_text("main")
    page.click('header.site a[hreflang="es"]')
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "es-PE"
    assert "Historial" in page.inner_text("main")
    page.goto(f"{site.base}/")  # the choice is remembered
    assert "Últimas órdenes" in page.inner_text("main")
    page.click('header.site a[hreflang="en"]')
    page.wait_for_load_state()
    assert "Latest orders" in page.inner_text("main")


def test_untrusted_text_is_only_text_in_the_browser(site: Site, make_page: Any) -> None:
    hostile = site.ledger.hostile
    watched = make_page()
    page = watched.page
    page.goto(f"{site.base}/o/{hostile['buyer']['ruc']}/{hostile['order_number']}")
    assert HOSTILE in page.inner_text("main")
    assert page.evaluate("document.querySelectorAll('main script, main img').length") == 0
    page.goto(f"{site.base}/r/{site.ledger.hostile_hash}")
    assert HOSTILE in page.inner_text("main")
    assert run_verification(page) == "pass"  # a hostile name is still a record like any other
    # the dialogs and script errors it would cause are checked by make_page
