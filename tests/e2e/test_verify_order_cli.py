"""`ancla verify-order` and `ancla verify-document` against a real service on a free port
and a real Hardhat node: histories recorded through the API, anchored, then checked by the
CLI as a subprocess trusting only the chain; then the service's bytes are changed, a record
is left pending, the service lies in its listing or is down, and each verdict is named."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.devchain import free_port
from app.main import create_app
from app.models import Record
from app.runtime import Runtime
from app.services.agencies import add_agency
from app.verification import CannotCheck, Service, verify_order
from tests.support.live import live_server
from tests.support.orders import BUYER_RUC, order
from tests.support.services import ancla

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.chain]

ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "250"}
ACTA = b"%PDF-1.7 acta de conformidad firmada\n" * 1000
ACTA_SHA256 = hashlib.sha256(ACTA).hexdigest()
ORDER_STEPS = [
    "record",
    "schema",
    "order",
    "prev",
    "rules",
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


@dataclass
class Live:
    """A service on a free port, the history of one order recorded through its API."""

    runtime: Runtime
    base: str
    key: str
    number: str
    hashes: list[str]

    @property
    def rpc(self) -> str:
        return self.runtime.settings.rpc_url

    @property
    def url(self) -> str:
        return f"{self.base}/v1/purchase-orders/{BUYER_RUC}/{self.number}"

    def append(self, kind: str, occurred_at: str, **members: Any) -> str:
        body = {"prev": self.hashes[-1], "type": kind, "occurred_at": occurred_at, **members}
        response = httpx.post(
            f"{self.url}/events", json=body, headers={"Authorization": f"Bearer {self.key}"}
        )
        assert response.status_code == 202, response.text
        self.hashes.append(response.json()["hash"])
        return self.hashes[-1]

    def cli(self, *args: str) -> Any:
        return ancla(*args, "--api", self.base, "--rpc", self.rpc, env=ENV)

    def order_json(self, *extra: str) -> tuple[int, dict[str, Any]]:
        result = self.cli("verify-order", BUYER_RUC, self.number, "--json", *extra)
        assert result.stderr == "", result.stderr
        return result.returncode, json.loads(result.stdout)


@pytest.fixture
def live(runtime: Runtime) -> Iterator[Live]:
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key
    with live_server(create_app(runtime=runtime)) as base:
        posted = order(1)
        created = httpx.post(
            f"{base}/v1/purchase-orders", json=posted, headers={"Authorization": f"Bearer {key}"}
        )
        assert created.status_code == 202, created.text
        history = Live(runtime, base, key, posted["order_number"], [created.json()["hash"]])
        history.append("accepted", "2026-01-31T10:05:00-05:00")
        history.append(
            "delivered",
            "2026-02-10T16:00:00-05:00",
            note="Conformidad del área usuaria",
            documents=[
                {
                    "title": "Acta de conformidad",
                    "url": "https://example.gob.pe/acta.pdf",
                    "sha256": ACTA_SHA256,
                }
            ],
        )
        invoice = {
            "number": "E001-123",
            "issued_at": "2026-02-11T09:00:00-05:00",
            "amount": posted["total"],
            "currency": "PEN",
        }
        history.append("invoiced", "2026-02-11T09:00:00-05:00", invoice=invoice)
        runtime.make_worker().tick(force_seal=True)
        yield history


def tamper(runtime: Runtime, record_hash: str, change: Callable[[bytes], bytes]) -> None:
    with runtime.session_factory() as session:
        canonical = session.scalar(select(Record.canonical).where(Record.hash == record_hash))
        assert canonical is not None
        session.execute(
            update(Record).where(Record.hash == record_hash).values(canonical=change(canonical))
        )
        session.commit()


def test_an_anchored_history_verifies_then_each_failure_is_named(
    live: Live, tmp_path: Path
) -> None:
    code, report = live.order_json()
    assert code == 0, report
    assert report["valid"] is True and report["error"] is None
    assert report["order"] == {
        "buyer_ruc": BUYER_RUC,
        "order_number": live.number,
        "hash": live.hashes[0],
        "head": live.hashes[-1],
        "records": 4,
    }
    assert [(r["seq"], r["hash"], r["type"], r["valid"]) for r in report["records"]] == [
        (0, live.hashes[0], "issued", True),
        (1, live.hashes[1], "accepted", True),
        (2, live.hashes[2], "delivered", True),
        (3, live.hashes[3], "invoiced", True),
    ]
    assert [s["step"] for s in report["records"][0]["steps"]] == [
        s for s in ORDER_STEPS if s != "prev"
    ]
    assert [s["step"] for s in report["records"][3]["steps"]] == ORDER_STEPS
    human = live.cli("verify-order", BUYER_RUC, live.number)
    assert human.returncode == 0, human.stderr
    assert f"valid: every record of order {live.number} of buyer {BUYER_RUC}" in human.stdout
    assert live.hashes[3] in human.stdout and "FAIL" not in human.stdout

    # A bound file verifies; a file nobody binds is invalid; an unreadable one cannot be checked.
    acta = tmp_path / "acta.pdf"
    acta.write_bytes(ACTA)
    bound = live.cli("verify-document", str(acta), "--json")
    assert bound.returncode == 0, bound.stdout + bound.stderr
    found = json.loads(bound.stdout)
    assert found["valid"] is True and found["sha256"] == ACTA_SHA256
    assert found["size"] == len(ACTA)
    assert [(r["hash"], r["type"], r["order"]) for r in found["records"]] == [
        (live.hashes[2], "delivered", {"buyer_ruc": BUYER_RUC, "order_number": live.number})
    ]
    assert [s["step"] for s in found["records"][0]["steps"]][:3] == ["record", "schema", "binds"]
    human = live.cli("verify-document", str(acta))
    assert human.returncode == 0 and "valid: 1 record(s) bind this file" in human.stdout
    stranger = tmp_path / "other.pdf"
    stranger.write_bytes(b"nobody recorded this\n")
    unbound = live.cli("verify-document", str(stranger))
    assert unbound.returncode == 1
    assert (
        "invalid: no record binds this file: the service lists none for SHA-256 "
        + hashlib.sha256(b"nobody recorded this\n").hexdigest()
    ) in unbound.stderr
    for unreadable, reason in ((tmp_path / "missing.pdf", "No such file"), (tmp_path, "Is a dir")):
        result = live.cli("verify-document", str(unreadable))
        assert result.returncode == 2
        assert f"error: cannot read {unreadable}: {reason}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

    # An event accepted but not yet anchored: the history is not verified, and it is named.
    pending = live.append(
        "paid", "2026-03-02T11:20:00-05:00", payment={"amount": "10.00", "currency": "PEN"}
    )
    code, report = live.order_json()
    assert code == 1
    assert [r["valid"] for r in report["records"]] == [True, True, True, True, False]
    last = report["records"][4]
    assert (last["hash"], last["type"], last["failed_step"]) == (pending, "paid", "anchor")
    assert report["error"].startswith(
        f"record 4 (paid) {pending}: anchor: the receipt is pending: the record is accepted but "
        "not yet anchored"
    )
    human = live.cli("verify-order", BUYER_RUC, live.number)
    assert human.returncode == 1
    assert f"invalid: record 4 (paid) {pending}: anchor: the receipt is pending" in human.stderr
    live.runtime.make_worker().tick(force_seal=True)
    assert live.order_json()[0] == 0

    # The service's stored bytes of one record changed: that record fails its `record` step,
    # and the rules of the records after it cannot be judged.
    tamper(live.runtime, live.hashes[2], lambda b: b.replace(b"Conformidad", b"Disconformidad"))
    code, report = live.order_json()
    assert code == 1
    assert [(r["valid"], r["failed_step"]) for r in report["records"]] == [
        (True, None),
        (True, None),
        (False, "record"),
        (False, "rules"),
        (False, "rules"),
    ]
    assert report["error"] == (
        f"record 2 (delivered) {live.hashes[2]}: record: the record's bytes the service serves "
        "do not hash to its hash: the record was changed, or is another one (expected "
        f"{live.hashes[2]}, got {report['records'][2]['steps'][0]['actual']}) "
        "(and 2 more records fail)"
    )
    assert report["records"][3]["error"] == (
        "rules: not checked: the history does not verify before this record (at record 2 "
        f"(delivered) {live.hashes[2]})"
    )
    human = live.cli("verify-order", BUYER_RUC, live.number)
    assert human.returncode == 1
    assert f"invalid: record 2 (delivered) {live.hashes[2]}: record: " in human.stderr
    assert "FAIL" in human.stdout
    document = live.cli("verify-document", str(acta), "--json")
    assert document.returncode == 1
    assert json.loads(document.stdout)["records"][0]["failed_step"] == "record"


def test_unknown_order_down_service_and_bad_arguments(live: Live, tmp_path: Path) -> None:
    some_file = tmp_path / "some.pdf"
    some_file.write_bytes(b"%PDF-1.7\n")
    unknown = live.cli("verify-order", BUYER_RUC, "OCAM-2026-9999-1-0")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "invalid: the service has no such order: no purchase order OCAM-2026-9999-1-0 of buyer "
        f"{BUYER_RUC}"
    )
    as_json = live.cli("verify-order", BUYER_RUC, "OCAM-2026-9999-1-0", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"].startswith("the service has no such order")

    down = f"http://127.0.0.1:{free_port()}"
    cases = [
        (
            ("verify-order", BUYER_RUC, live.number, "--api", down, "--rpc", live.rpc),
            f"error: cannot fetch {down}/v1/purchase-orders/{BUYER_RUC}/{live.number}: ",
        ),
        (
            ("verify-order", BUYER_RUC, live.number, "--api", live.base, "--rpc", down),
            "error: could not check against the chain: RPC endpoint unreachable",
        ),
        (
            ("verify-order", "2060002742", live.number, "--api", live.base, "--rpc", live.rpc),
            "error: BUYER_RUC '2060002742' is not a RUC: must be 11 digits",
        ),
        (
            ("verify-order", BUYER_RUC, "OC 1", "--api", live.base, "--rpc", live.rpc),
            "error: ORDER_NUMBER 'OC 1' is not an order number: must start with a letter",
        ),
        (
            ("verify-order", BUYER_RUC, live.number, "--api", "127.0.0.1:8000", "--rpc", live.rpc),
            "error: --api must be an http:// or https:// URL, not '127.0.0.1:8000'",
        ),
        (
            ("verify-order", BUYER_RUC, live.number, "--rpc", live.rpc),
            "error: verify-order needs --api URL of the service",
        ),
        (
            ("verify-document", str(some_file), "--api", live.base, "--rpc", "ftp://x"),
            "error: --rpc must be an http:// or https:// URL, not 'ftp://x'",
        ),
        (
            ("verify-document", str(some_file), "--api", down, "--rpc", live.rpc),
            f"error: cannot fetch {down}/v1/documents/",
        ),
    ]
    for args, message in cases:
        result = ancla(*args, env=ENV)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def lying(live: Live, change: Callable[[dict[str, Any]], Any]) -> Service:
    """The live service, but its order view changed by ``change`` on the way (a service that
    lies about the history: it can only do so with records the chain does not back)."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = httpx.get(str(request.url))
        if request.url.path.startswith("/v1/purchase-orders/"):
            view = answer.json()
            changed = change(view)
            return httpx.Response(
                200, content=json.dumps(view).encode() if changed is None else changed
            )
        return httpx.Response(answer.status_code, content=answer.content)

    return Service(live.base, http=httpx.Client(transport=httpx.MockTransport(handle)))


def test_a_service_that_lies_about_the_history(live: Live, runtime: Runtime) -> None:
    other = order(2)
    created = httpx.post(
        f"{live.base}/v1/purchase-orders",
        json=other,
        headers={"Authorization": f"Bearer {live.key}"},
    )
    assert created.status_code == 202
    runtime.make_worker().tick(force_seal=True)

    def check(change: Callable[[dict[str, Any]], Any]) -> Any:
        with lying(live, change) as service:
            return verify_order(service, BUYER_RUC, live.number, rpc_url=live.rpc)

    assert check(lambda view: None).valid
    # An event left out: the next one does not link to the record listed before it.
    left_out = check(lambda view: view["history"].pop(1) and None)
    assert [(c.seq, c.failed_step) for c in left_out.failed] == [(1, "prev"), (2, "rules")]
    assert left_out.failed[0].failure is not None
    assert left_out.failed[0].failure.expected == live.hashes[0]
    assert left_out.failed[0].failure.actual == live.hashes[1]
    # Another order's record passed off as this one's.
    swapped = check(lambda view: view["history"][0].update(hash=created.json()["hash"]))
    assert swapped.failed[0].seq == 0 and swapped.failed[0].failed_step == "order"
    assert (
        swapped.error is not None
        and f"the record is of order {other['order_number']}" in swapped.error
    )
    # A history in the wrong order.
    reordered = check(lambda view: view["history"].reverse())
    assert reordered.failed[0].seq == 0 and reordered.failed[0].failed_step == "schema"
    assert "the first record of an order's history is an ancla/purchase-order/1 record" in str(
        reordered.failed[0].error
    )
    # Its head, contradicted by its own history.
    headless = check(lambda view: view.update(head=live.hashes[1]))
    assert not headless.valid and not headless.failed
    assert headless.error == (
        f"the service says the order's head is {live.hashes[1]}, but the history it lists ends "
        f"at {live.hashes[-1]}"
    )
    # Not an answer at all: cannot check.
    with pytest.raises(CannotCheck, match="answered with something that is not an order's view"):
        check(lambda view: b"<html>busy</html>")
    with pytest.raises(CannotCheck, match=r"history: List should have at least 1 item"):
        check(lambda view: view.update(history=[]))
