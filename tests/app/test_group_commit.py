"""Group commit: concurrent requests' orders share one transaction, each request
answered only after the commit, one bad request never failing the others."""

from __future__ import annotations

import asyncio
import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.cli import upgrade_database
from app.db import is_sqlite, make_engine, make_session_factory
from app.models import Record
from app.records.order_event import SCHEMA as EVENTS
from app.records.order_event import ValidEvent, validate_event
from app.records.purchase_order import SCHEMA, PurchaseOrder
from app.services import ingest
from app.services.ingest import GroupCommitter, prepare_items, record_items
from tests.support.orders import BUYER_RUC, order
from tests.support.services import ensure_agency

pytestmark = pytest.mark.db


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=4)
    yield engine
    engine.dispose()


def _count_commits(engine: Engine) -> list[int]:
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    return commits


def _orders(numbers: range) -> list[PurchaseOrder]:
    return [PurchaseOrder.model_validate(order(i)) for i in numbers]


def _lock_writes(engine: Engine, database_url: str) -> object:
    """A connection holding the database's write lock until it rolls back."""
    blocker = make_engine(database_url, pool_size=1).connect()
    if is_sqlite(engine):
        blocker.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        blocker.execute(text("LOCK TABLE records IN EXCLUSIVE MODE"))
    return blocker


def test_requests_waiting_behind_a_commit_share_the_next_one(
    engine: Engine, database_url: str
) -> None:
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    committer = GroupCommitter(session_factory)
    commits = _count_commits(engine)
    blocker = _lock_writes(engine, database_url)

    async def scenario() -> list[list[str]]:
        first = asyncio.create_task(committer.record(agency, SCHEMA, _orders(range(1))))
        # The recorder takes the first request alone and waits on the lock...
        await asyncio.sleep(0.5)
        later = [
            asyncio.create_task(committer.record(agency, SCHEMA, _orders(range(i, i + 1))))
            for i in range(1, 21)
        ]
        await asyncio.sleep(0.2)
        # ...nobody is answered while nothing is committed...
        assert not first.done() and not any(task.done() for task in later)
        blocker.rollback()  # type: ignore[attr-defined]
        results = [await first] + [await task for task in later]
        return [[r.outcome for r in request] for request in results]

    try:
        outcomes = asyncio.run(scenario())
    finally:
        blocker.close()  # type: ignore[attr-defined]
        committer.close()
    assert outcomes == [["created"]] * 21
    # ...then the 20 that queued meanwhile are stored in one transaction.
    assert len(commits) == 2
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Record)) == 21


def test_duplicates_across_grouped_requests_are_judged_in_order(
    engine: Engine, database_url: str
) -> None:
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    committer = GroupCommitter(session_factory)
    blocker = _lock_writes(engine, database_url)
    changed = PurchaseOrder.model_validate(order(7, status="ANULADA"))

    async def scenario() -> list[str]:
        tasks = [asyncio.create_task(committer.record(agency, SCHEMA, _orders(range(99, 100))))]
        await asyncio.sleep(0.5)
        tasks += [
            asyncio.create_task(committer.record(agency, SCHEMA, orders))
            for orders in (_orders(range(7, 8)), _orders(range(7, 8)), [changed])
        ]
        await asyncio.sleep(0.2)
        blocker.rollback()  # type: ignore[attr-defined]
        return [(await task)[0].outcome for task in tasks]

    try:
        outcomes = asyncio.run(scenario())
    finally:
        blocker.close()  # type: ignore[attr-defined]
        committer.close()
    assert outcomes == ["created", "created", "exists", "conflict"]


def test_a_request_that_cannot_be_stored_does_not_fail_the_others(
    engine: Engine, database_url: str
) -> None:
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    committer = GroupCommitter(session_factory)
    blocker = _lock_writes(engine, database_url)
    # A record the database refuses (NOT NULL canonical bytes): stands for any
    # row-level error the validation could have missed.
    _, broken = prepare_items(agency, SCHEMA, _orders(range(50, 51)))
    broken[0].canonical = None  # type: ignore[assignment]

    async def scenario() -> list[BaseException | list[str]]:
        tasks = [asyncio.create_task(committer.record(agency, SCHEMA, _orders(range(40, 41))))]
        await asyncio.sleep(0.5)
        tasks += [
            asyncio.create_task(committer.record(agency, SCHEMA, _orders(range(41, 42)))),
            asyncio.create_task(committer.store(broken)),  # type: ignore[arg-type]
            asyncio.create_task(committer.record(agency, SCHEMA, _orders(range(42, 43)))),
        ]
        await asyncio.sleep(0.2)
        blocker.rollback()  # type: ignore[attr-defined]
        answers = await asyncio.gather(*tasks, return_exceptions=True)
        return [
            a if isinstance(a, BaseException) or a is None else [r.outcome for r in a]
            for a in answers
        ]

    try:
        answers = asyncio.run(scenario())
    finally:
        blocker.close()  # type: ignore[attr-defined]
        committer.close()
    assert answers[0] == answers[1] == answers[3] == ["created"]
    assert isinstance(answers[2], IntegrityError)
    with session_factory() as session:
        numbers = set(session.scalars(select(Record.order_number)))
    assert numbers == {order(i)["order_number"] for i in (40, 41, 42)}


def test_close_stores_what_is_queued(engine: Engine) -> None:
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    committer = GroupCommitter(session_factory)

    async def scenario() -> list[str]:
        task = asyncio.create_task(committer.record(agency, SCHEMA, _orders(range(3))))
        await asyncio.sleep(0)  # queued
        await asyncio.to_thread(committer.close)
        return [r.outcome for r in await task]

    assert asyncio.run(scenario()) == ["created"] * 3


@pytest.mark.parametrize(
    "changes",
    [
        {},
        # A fraction of a second, and a UTC time in the next year.
        {
            "issued_at": "2026-12-31T23:59:59.999999-05:00",
            "subtotal": "1250.5",
            "tax": "225.09",
            "total": "1475.59",
        },
        # A year under 1000, an offset ahead of UTC, amounts without decimals.
        {"issued_at": "0999-03-01T00:00:00.5+14:00", "subtotal": "7", "tax": "1", "total": "8"},
    ],
    ids=["example", "fraction-new-year", "year-999-whole-amounts"],
)
def test_rows_are_stored_exactly_as_sqlalchemy_would_store_them(
    engine: Engine, changes: dict[str, str]
) -> None:
    """The insert bypasses SQLAlchemy's statement machinery for speed, and writes
    SQLite's forms of dates and amounts itself; the bytes in the database must
    be the ones SQLAlchemy stores (dates as SQLite text, amounts, binary)."""
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    with session_factory() as session:
        (result,) = record_items(
            session=session,
            agency=agency,
            schema=SCHEMA,
            items=[PurchaseOrder.model_validate(order(0, **changes))],
        )
    assert result.outcome == "created", result
    records = Record.__table__
    with engine.begin() as connection:
        row = connection.execute(select(records).where(records.c.hash == result.hash)).one()
        copy = {
            **row._asdict(),
            "hash": "0x" + "ee" * 32,
            "order_number": "COPY-1",
            "identity": "COPY-1",
        }
        del copy["id"]
        connection.execute(records.insert().values(**copy))
    columns = [c.name for c in records.columns if c.name not in ("id", "order_number", "identity")]
    raw = f"SELECT {', '.join(columns)} FROM records WHERE order_number = :n"  # noqa: S608
    with engine.connect() as connection:
        ours, theirs = (
            dict(zip(columns, connection.execute(text(raw), {"n": number}).one(), strict=True))
            for number in (result.order_number, "COPY-1")
        )
    # The hash as its 32 bytes (app.models.Hash32), whichever way it went in.
    assert (ours.pop("hash"), theirs.pop("hash")) == (
        bytes.fromhex(str(result.hash)[2:]),
        bytes.fromhex("ee" * 32),
    )
    assert ours == theirs


def test_sqlite_writers_of_other_processes_queue_on_the_lock_file(tmp_path: Path) -> None:
    """Writers of several processes (``ancla serve --workers 2``) wait on an
    flock beside the database, which wakes the next one at once, instead of
    sleeping in SQLite's busy handler. Another open file description of the
    lock file stands for the other process: flock locks conflict between them."""
    url = f"sqlite:///{tmp_path / 'ancla.db'}"
    upgrade_database(url)
    engine = make_engine(url, pool_size=2)
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    stored = threading.Event()

    def store() -> None:
        with session_factory() as session:
            record_items(session=session, agency=agency, schema=SCHEMA, items=_orders(range(1)))
        stored.set()

    with open(tmp_path / "ancla.db-writer.lock", "ab") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        writer = threading.Thread(target=store)
        writer.start()
        assert not stored.wait(0.5), "the write went ahead while another process held the lock"
        fcntl.flock(other_process, fcntl.LOCK_UN)
        assert stored.wait(30)
    writer.join()
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Record)) == 1
    engine.dispose()


def test_sqlite_writes_go_on_when_the_lock_file_cannot_be_opened(tmp_path: Path) -> None:
    """No lock file (here a directory stands in its way, as a read-only or full
    disk would): writers still queue within the process, and nothing is refused."""
    url = f"sqlite:///{tmp_path / 'ancla.db'}"
    upgrade_database(url)
    (tmp_path / "ancla.db-writer.lock").mkdir()
    engine = make_engine(url, pool_size=2)
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    with session_factory() as session:
        results = record_items(
            session=session, agency=agency, schema=SCHEMA, items=_orders(range(3))
        )
    assert [r.outcome for r in results] == ["created"] * 3
    engine.dispose()


def test_an_append_that_loses_its_head_while_queued_for_the_lock_is_refused(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite an event's chain is read before its writer queues for the write
    lock. Another writer that extends the chain meanwhile wins: the event is then
    judged again inside the lock and refused with the new head, and the history
    does not fork (on PostgreSQL the chain is read after the other commit)."""
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    with session_factory() as session:
        (placed,) = record_items(
            session=session, agency=agency, schema=SCHEMA, items=_orders(range(1))
        )
    assert placed.outcome == "created"
    head = placed.hash

    def appended(status: str) -> ValidEvent:
        return validate_event(
            {
                "buyer_ruc": BUYER_RUC,
                "order_number": order(0)["order_number"],
                "prev": head,
                "type": "status",
                "occurred_at": "2026-02-01T10:00:00-05:00",
                "status": status,
            }
        )

    other_engine = make_engine(database_url, pool_size=1)
    others: list[str] = []
    real = ingest.serialized_writes
    entered: list[Session] = []

    @contextmanager
    def other_writer_first(session: Session) -> Iterator[None]:
        # Another process's append, committed while ours waits for the lock
        # (its own writes take the lock as usual, and enter here second).
        entered.append(session)
        if len(entered) == 1:
            with make_session_factory(other_engine)() as other:
                (won,) = record_items(
                    session=other, agency=agency, schema=EVENTS, items=[appended("OTRO")]
                )
            assert won.outcome == "created"
            others.append(won.hash)
        with real(session):
            yield

    monkeypatch.setattr(ingest, "serialized_writes", other_writer_first)
    try:
        with session_factory() as session:
            (lost,) = record_items(
                session=session, agency=agency, schema=EVENTS, items=[appended("NUESTRO")]
            )
    finally:
        other_engine.dispose()
    assert lost.outcome == "conflict"
    assert lost.head == others[0]
    with session_factory() as session:
        events = session.scalars(select(Record.hash).where(Record.schema == EVENTS.name)).all()
    assert list(events) == others
