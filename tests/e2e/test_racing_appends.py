"""Racing appends to one order's head across serving processes (`ancla serve --workers 2`):
in every round exactly one is accepted, the others get 409 naming the head, and the
history stays one chain, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from ledger import record_hash
from tests.support.load import serve
from tests.support.orders import BUYER_RUC, order
from tests.support.services import ancla, settings_env

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.chain]

ROUNDS = 5
RACERS = 8


def race(racer: Callable[[int], None]) -> None:
    """Run RACERS racers at once (each waits on a barrier before its request)."""
    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_racing_appends_across_processes_never_fork(make_settings: Any, tmp_path: Path) -> None:
    settings: Settings = make_settings()
    env = settings_env(settings)
    added = ancla("agency", "add", "--ruc", BUYER_RUC, "--name", "MP", "--json", env=env)
    assert added.returncode == 0, added.stderr
    key = json.loads(added.stdout)["api_key"]
    headers = {"Authorization": f"Bearer {key}"}
    service, base = serve(env, tmp_path / "serve.log", workers=2, anchor=False)
    try:
        posted = order(11)
        created = httpx.post(f"{base}/v1/purchase-orders", json=posted, headers=headers)
        assert created.status_code == 202, created.text
        url = f"{base}/v1/purchase-orders/{BUYER_RUC}/{posted['order_number']}"
        chain = [created.json()["hash"]]
        for round_ in range(ROUNDS):
            answers: list[httpx.Response] = []
            start = threading.Barrier(RACERS)

            def racer(
                i: int,
                prev: str = chain[-1],
                round_: int = round_,
                start: threading.Barrier = start,
                answers: list[httpx.Response] = answers,
            ) -> None:
                # A connection each: the kernel spreads them over both processes.
                with httpx.Client(timeout=30) as http:
                    start.wait()
                    answers.append(
                        http.post(
                            f"{url}/events",
                            json={
                                "prev": prev,
                                "type": "status",
                                "occurred_at": "2026-02-01T10:00:00-05:00",
                                "status": f"ESTADO {round_}-{i}",
                            },
                            headers=headers,
                        )
                    )

            race(racer)
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [202] + [409] * (RACERS - 1), [a.text for a in answers]
            winner = next(a for a in answers if a.status_code == 202).json()
            assert winner["seq"] == round_ + 1
            for loser in (a for a in answers if a.status_code == 409):
                assert loser.json()["head"] == winner["hash"], loser.text
            chain.append(winner["hash"])
        view = httpx.get(url).json()
        assert [entry["hash"] for entry in view["history"]] == chain
        assert view["head"] == chain[-1] and view["broken"] is None

        # Bulks that chain two events of their own on the same head: one bulk wins
        # both, and no event of a losing bulk is stored on top of its lost first.
        bulks: list[httpx.Response] = []
        start = threading.Barrier(RACERS)

        def bulk_racer(i: int) -> None:
            first = {
                "buyer_ruc": BUYER_RUC,
                "order_number": posted["order_number"],
                "prev": chain[-1],
                "type": "status",
                "occurred_at": "2026-02-02T10:00:00-05:00",
                "status": f"LOTE {i}",
            }
            record = {
                "schema": "ancla/order-event/1",
                "order": {"buyer_ruc": BUYER_RUC, "order_number": posted["order_number"]},
                "prev": chain[-1],
                "event": {k: first[k] for k in ("type", "occurred_at", "status")},
            }
            second = {**first, "prev": record_hash(record), "status": f"LOTE {i} B"}
            with httpx.Client(timeout=30) as http:
                start.wait()
                bulks.append(
                    http.post(
                        f"{base}/v1/events/bulk",
                        json={"events": [first, second]},
                        headers=headers,
                    )
                )

        race(bulk_racer)
        outcomes = sorted(tuple(r["status"] for r in bulk.json()["results"]) for bulk in bulks)
        assert outcomes == [(202, 202)] + [(409, 409)] * (RACERS - 1), outcomes
        view = httpx.get(url).json()
        assert len(view["history"]) == ROUNDS + 3 and view["broken"] is None
        audited = ancla("verify", "--json", env=env)
        assert audited.returncode == 0, audited.stdout + audited.stderr
        assert json.loads(audited.stdout)["histories_checked"] == 1
    finally:
        service.stop()
