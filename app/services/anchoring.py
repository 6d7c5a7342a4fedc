"""The anchor worker: seal, anchor, confirm, and repair (DESIGN §4).

Lifecycle of a batch: sealed -> submitted (tx hash and nonce recorded) ->
anchored (mined, BatchAnchored seen) -> final (K confirmations). The chain is
the arbiter whenever the database and the chain disagree:

* a crash between sending and recording leaves a batch "sealed" that the
  chain already holds: before sending, the worker reads ``rootOf(id)``; the
  same root means "already anchored", and the anchoring event is adopted;
* a reorged-away or dropped anchor (block hash changed, transaction gone)
  sends the batch, and every later one, back to "sealed";
* a chain reset (another genesis, or no contract code) sends every batch back.

Only the leader (app.services.leader) runs :meth:`AnchorWorker.tick`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from app import metrics
from app.db import SessionFactory
from app.models import (
    ANCHORED,
    CHAIN_TARGET_ID,
    FINAL,
    SEALED,
    SUBMITTED,
    Batch,
    BatchEntry,
    ChainTarget,
    PendingRecord,
    Record,
    utcnow,
)
from app.services.batching import oldest_pending, seal_batches
from app.services.leader import LeaderLock
from ledger.anchors import Anchor, AnchorEvent
from ledger.chain import ChainClient, Registry, SentTransaction
from ledger.errors import BatchIdConflict, ChainError, LedgerError, TransactionFailed

log = logging.getLogger("ancla.worker")

# Gauges are for dashboards: refreshing them every few seconds is plenty, and
# every 0.2 s tick would put two extra queries on a busy database.
_GAUGE_INTERVAL_SECONDS = 5.0


class AnchorConflict(LedgerError):
    """The chain holds another root for one of our batch ids: stop and call a human."""


@dataclass
class WorkerConfig:
    max_size: int
    max_age_seconds: float
    confirmations: int
    legacy: bool = False
    gas_price: int | None = None
    # How long one tick waits for a sent anchor to be mined before moving on.
    mine_timeout: float = 60.0
    # A transaction still unmined after this long is stuck: if the node still
    # has it, it is replaced with higher fees; if the node dropped it, re-sent.
    resend_after_seconds: float = 120.0
    # Each replacement multiplies every fee field (nodes require +10% or more)...
    fee_bump: float = 1.25
    # ... at most this many times, so a fee spike cannot drain the signer.
    max_fee_bumps: int = 5
    poll_interval: float = 0.2
    # Between ticks that found nothing to do; still well inside the batch age.
    idle_interval: float = 1.0


@dataclass
class TickReport:
    sealed: list[int] = field(default_factory=list)
    anchored: list[int] = field(default_factory=list)
    finalized: list[int] = field(default_factory=list)
    reset: list[int] = field(default_factory=list)


class AnchorWorker:
    def __init__(
        self,
        *,
        session_factory: SessionFactory,
        client: ChainClient,
        registry: Registry,
        signer: LocalAccount,
        config: WorkerConfig,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.registry = registry
        self.signer = signer
        self.config = config
        self._gauges_at = float("-inf")

    # -- one pass ---------------------------------------------------------------

    def tick(self, *, force_seal: bool = False) -> TickReport:
        report = TickReport()
        with self.session_factory() as session:
            self._check_chain_target(session, report)
            report.sealed = [
                b.id
                for b in seal_batches(
                    session=session,
                    max_size=self.config.max_size,
                    max_age_seconds=self.config.max_age_seconds,
                    force=force_seal,
                )
            ]
            self._confirm(session, report)
            while self._anchor_next(session, report):
                pass
            self._confirm(session, report)
            if time.monotonic() - self._gauges_at > _GAUGE_INTERVAL_SECONDS:
                self._update_gauges(session)
                self._gauges_at = time.monotonic()
        return report

    # -- chain identity -----------------------------------------------------------

    def _check_chain_target(self, session: Session, report: TickReport) -> None:
        chain_id = self.client.chain_id
        genesis = self.client.genesis_hash()
        contract = self.registry.address
        target = session.get(ChainTarget, CHAIN_TARGET_ID)
        if target is None:
            session.add(
                ChainTarget(
                    id=CHAIN_TARGET_ID, chain_id=chain_id, genesis_hash=genesis, contract=contract
                )
            )
            session.commit()
            return
        if (target.chain_id, target.genesis_hash, target.contract) == (chain_id, genesis, contract):
            return
        log.warning(
            "chain target changed (chain %s -> %s, genesis %s -> %s, contract %s -> %s): "
            "every batch will be anchored again",
            target.chain_id,
            chain_id,
            target.genesis_hash,
            genesis,
            target.contract,
            contract,
        )
        report.reset.extend(self._reset_from(session, 1, cause="chain_reset"))
        target.chain_id, target.genesis_hash, target.contract = chain_id, genesis, contract
        target.recorded_at = utcnow()
        session.commit()

    def _reset_from(self, session: Session, first_id: int, *, cause: str) -> list[int]:
        """Send batches ``first_id`` and later back to sealed (their anchors are gone)."""
        ids = list(
            session.scalars(select(Batch.id).where(Batch.id >= first_id, Batch.status != SEALED))
        )
        if not ids:
            return []
        session.execute(
            update(Batch)
            .where(Batch.id.in_(ids))
            .values(
                status=SEALED,
                chain_id=None,
                contract=None,
                tx_hash=None,
                tx_nonce=None,
                submitted_at=None,
                block_number=None,
                block_hash=None,
                log_index=None,
                block_timestamp=None,
                anchored_at=None,
                gas_used=None,
                final_at=None,
                fee_bumps=0,
                reanchor_count=Batch.reanchor_count + 1,
                last_error=f"anchor lost ({cause}); anchoring again",
            )
        )
        session.commit()
        metrics.BATCHES_REANCHORED.labels(cause=cause).inc(len(ids))
        return ids

    # -- anchoring ----------------------------------------------------------------

    def _anchor_next(self, session: Session, report: TickReport) -> bool:
        """Anchor the lowest batch not yet on chain; True if another may follow now."""
        batch = session.scalar(
            select(Batch).where(Batch.status.in_((SEALED, SUBMITTED))).order_by(Batch.id).limit(1)
        )
        if batch is None:
            return False
        if batch.status == SUBMITTED and not self._settle_submitted(session, batch, report):
            return False
        if batch.status != SEALED:
            return True
        chain_next = self.registry.next_batch_id()
        if chain_next > batch.id:
            # The chain already has this id: a crash after sending, or a
            # transaction mined after we gave up on it. Adopt it if it is ours.
            self._adopt(session, batch, report)
            return True
        if chain_next < batch.id:
            # The chain lost earlier batches (reorg or reset): redo from there.
            report.reset.extend(self._reset_from(session, chain_next, cause="chain_behind"))
            return True
        try:
            sent = self._send(batch)
        except BatchIdConflict:
            # Someone (a previous life of this worker) anchored it meanwhile.
            return True
        _fault_point("after-send")
        batch.status = SUBMITTED
        batch.tx_hash = sent.tx_hash
        batch.tx_nonce = sent.nonce
        batch.chain_id = self.client.chain_id
        batch.contract = self.registry.address
        batch.submitted_at = utcnow()
        session.commit()
        _fault_point("after-submitted")
        return self._settle_submitted(session, batch, report)

    def _send(
        self, batch: Batch, *, nonce: int | None = None, fee_multiplier: float = 1.0
    ) -> SentTransaction:
        return self.registry.send_anchor(
            self.signer,
            batch_id=batch.id,
            root=batch.root,
            leaf_count=batch.size,
            nonce=nonce,
            legacy=self.config.legacy,
            gas_price=self.config.gas_price,
            fee_multiplier=fee_multiplier,
        )

    def _settle_submitted(self, session: Session, batch: Batch, report: TickReport) -> bool:
        """Wait (bounded) for a submitted anchor; True once it is settled either way."""
        assert batch.tx_hash is not None  # noqa: S101 - set together with SUBMITTED
        try:
            anchor = self.registry.wait_for_anchor(
                batch.tx_hash,
                batch_id=batch.id,
                timeout=self.config.mine_timeout,
                poll=self.config.poll_interval,
            )
        except TransactionFailed as exc:
            return self._unmined(session, batch, report, exc)
        self._mark_anchored(session, batch, anchor)
        report.anchored.append(batch.id)
        return True

    def _unmined(
        self, session: Session, batch: Batch, report: TickReport, exc: TransactionFailed
    ) -> bool:
        """The anchoring transaction reverted, or is not mined yet: find out which and act."""
        assert batch.tx_hash is not None  # noqa: S101
        if self.registry.next_batch_id() > batch.id:
            # Mined after all, perhaps an earlier copy with the same nonce: the
            # chain has the batch, so adopt its event (or stop on a conflict).
            self._adopt(session, batch, report)
            return True
        if self.client.transaction_status(batch.tx_hash) is not None:
            # Mined but reverted, and the batch is not on chain: send it again.
            self._reset_from(session, batch.id, cause="reverted")
            batch.last_error = str(exc)
            session.commit()
            return True
        age = (utcnow() - (batch.submitted_at or utcnow())).total_seconds()
        if age < self.config.resend_after_seconds:
            return False  # pending; check again next tick
        if not self.client.transaction_known(batch.tx_hash):
            log.warning(
                "anchor of batch %s (%s) was dropped by the node; sending again",
                batch.id,
                batch.tx_hash,
            )
            self._reset_from(session, batch.id, cause="dropped")
            return True
        if batch.fee_bumps >= self.config.max_fee_bumps:
            message = (
                f"anchor of batch {batch.id} is still unmined after "
                f"{batch.fee_bumps} fee bumps; waiting (raise the limit or the fees)"
            )
            if batch.last_error != message:
                log.error("%s", message)
                batch.last_error = message
                session.commit()
            return False
        bumps = batch.fee_bumps + 1
        try:
            sent = self._send(
                batch, nonce=batch.tx_nonce, fee_multiplier=self.config.fee_bump**bumps
            )
        except BatchIdConflict:
            self._adopt(session, batch, report)
            return True
        log.warning(
            "anchor of batch %s stuck since %.0f s; replaced %s with %s (fees x%.2f)",
            batch.id,
            age,
            batch.tx_hash,
            sent.tx_hash,
            self.config.fee_bump**bumps,
        )
        batch.tx_hash = sent.tx_hash
        batch.submitted_at = utcnow()
        batch.fee_bumps = bumps
        session.commit()
        metrics.FEE_BUMPS.inc()
        return False

    def _adopt(self, session: Session, batch: Batch, report: TickReport) -> None:
        root = self.registry.root_of(batch.id)
        if root != batch.root:
            message = (
                f"the registry holds root {root} for batch {batch.id}, but this ledger sealed "
                f"{batch.root}: refusing to continue anchoring"
            )
            batch.last_error = message
            session.commit()
            raise AnchorConflict(message)
        start = _adoption_start(session, batch)
        event = _matching(
            self.registry.find_anchor_events(batch_id=batch.id, from_block=start), batch
        )
        if event is None and start > 0:
            # Not after the previous anchor (a reorg deeper than the margin, a
            # block number of another chain): the whole chain, as a last resort.
            event = _matching(self.registry.find_anchor_events(batch_id=batch.id), batch)
        if event is None:
            raise ChainError(f"rootOf({batch.id}) is set but no BatchAnchored event was found")
        log.info("batch %s was already anchored in %s; adopting it", batch.id, event.tx_hash)
        self._mark_anchored(session, batch, self.registry.anchor_of(event))
        report.anchored.append(batch.id)

    def _mark_anchored(self, session: Session, batch: Batch, anchor: Anchor) -> None:
        batch.mark_anchored(anchor)
        session.commit()
        metrics.BATCHES_ANCHORED.inc()
        assert batch.anchored_at is not None  # noqa: S101 - set by mark_anchored
        metrics.ANCHOR_LATENCY.observe((batch.anchored_at - batch.sealed_at).total_seconds())

    # -- confirmations and reorgs -------------------------------------------------

    def _confirm(self, session: Session, report: TickReport) -> None:
        """Detect reorged anchors, then promote anchored batches with K confirmations.

        Blocks form a hash chain: if the newest anchor's block is still
        canonical, so is every older one. So only the newest is checked on a
        quiet tick, and the walk goes back only while blocks differ. Final
        batches are included: with a small K a reorg can still remove them.
        """
        head = self.client.head()
        reorged: list[int] = []
        on_chain = session.scalars(
            select(Batch).where(Batch.status.in_((ANCHORED, FINAL))).order_by(Batch.id.desc())
        )
        for batch in on_chain:
            assert batch.block_number is not None  # noqa: S101 - set with ANCHORED
            if self.client.block_hash_at(batch.block_number) == batch.block_hash:
                break
            reorged.append(batch.id)
        if reorged:
            log.warning(
                "batches %s: their blocks were reorged away; anchoring again", sorted(reorged)
            )
            report.reset.extend(self._reset_from(session, min(reorged), cause="reorg"))
        anchored = session.scalars(
            select(Batch).where(Batch.status == ANCHORED).order_by(Batch.id)
        ).all()
        for batch in anchored:
            assert batch.block_number is not None  # noqa: S101
            if head - batch.block_number + 1 >= self.config.confirmations:
                batch.status = FINAL
                batch.final_at = utcnow()
                session.commit()
                metrics.BATCHES_FINAL.inc()
                report.finalized.append(batch.id)

    def _update_gauges(self, session: Session) -> None:
        metrics.PENDING_RECORDS.set(
            session.scalar(select(func.count()).select_from(PendingRecord)) or 0
        )
        oldest = oldest_unanchored(session=session)
        metrics.OLDEST_UNANCHORED_AGE.set(
            0 if oldest is None else (utcnow() - oldest).total_seconds()
        )

    # -- the loop -----------------------------------------------------------------

    def run(self, engine: Engine, stop: threading.Event) -> None:
        """Lead when possible; otherwise stand by. Backs off on chain errors."""
        lock = LeaderLock(engine)
        backoff = self.config.poll_interval
        try:
            while not stop.is_set():
                was_leader = lock.held
                if not (lock.check() if was_leader else lock.try_acquire()):
                    if was_leader:
                        log.warning("lost the anchoring lead (database session gone)")
                    metrics.IS_LEADER.set(0)
                    stop.wait(1.0)
                    continue
                if not was_leader:
                    log.info("this worker now leads anchoring (pid %s)", os.getpid())
                metrics.IS_LEADER.set(1)
                try:
                    report = self.tick()
                    busy = report.sealed or report.anchored or report.finalized or report.reset
                    # A quiet ledger is polled less often: each tick costs the API
                    # processes' shared CPU (measured: p99 of receipt lookups 5 -> 21 ms
                    # with the worker in the same process polling every 0.2 s).
                    backoff = self.config.poll_interval if busy else self.config.idle_interval
                except AnchorConflict as exc:
                    log.error("%s", exc)
                    backoff = 30.0
                except ChainError as exc:
                    metrics.RPC_ERRORS.inc()
                    log.warning("chain error, retrying in %.1f s: %s", backoff, exc)
                    backoff = min(backoff * 2, 30.0)
                except Exception:  # a database outage must not kill the worker thread
                    log.exception("anchor worker tick failed; retrying in %.1f s", backoff)
                    backoff = min(backoff * 2, 30.0)
                stop.wait(backoff)
        finally:
            lock.release()
            metrics.IS_LEADER.set(0)


# Blocks searched before the previous batch's anchor block: a reorg may have
# moved that anchor lower before this worker noticed. Ethereum finalises
# within 64 blocks and LACChain's BFT consensus at once; a deeper move still
# falls back to searching the whole chain.
_REORG_MARGIN_BLOCKS = 128


def _adoption_start(session: Session, batch: Batch) -> int:
    """The first block to search for ``batch``'s anchor event.

    The contract takes batch ids in order, so batch N was anchored after batch
    N-1: the search starts at N-1's anchor block (less a reorg margin), not at
    block 0. From block 0, a provider that caps eth_getLogs at a few thousand
    blocks made recovery after a crash cost thousands of requests on a long
    chain (the range is halved until each part is accepted).
    """
    previous = session.get(Batch, batch.id - 1) if batch.id > 1 else None
    if previous is None or previous.block_number is None:
        return 0
    return max(0, previous.block_number - _REORG_MARGIN_BLOCKS)


def _matching(events: list[AnchorEvent], batch: Batch) -> AnchorEvent | None:
    return next((e for e in events if e.root == batch.root and e.leaf_count == batch.size), None)


def oldest_unanchored(*, session: Session) -> datetime | None:
    """Acceptance time of the oldest record whose batch is not anchored yet.

    Index lookups only, never a scan of the ledger (a join over all records
    took 180-280 ms at 200k rows and ran every tick): the first record of the
    queue, and the first record (position 0, the lowest id when sealed) of
    the oldest batch not anchored yet.
    """
    pending = oldest_pending(session)
    unanchored = select(func.min(Batch.id)).where(Batch.status.in_((SEALED, SUBMITTED)))
    first_sealed = select(BatchEntry.record_id).where(
        BatchEntry.batch_id == unanchored.scalar_subquery(), BatchEntry.position == 0
    )
    sealed = session.scalar(
        select(Record.accepted_at).where(Record.id == first_sealed.scalar_subquery())
    )
    found = [moment for moment in (pending, sealed) if moment is not None]
    return min(found) if found else None


def _fault_point(name: str) -> None:
    """Crash the process here when ANCLA_FAULT names this point (crash-recovery tests).

    A real SIGKILL-equivalent exit, not a mock: the database and the chain
    are left exactly as a crash at this line would leave them.
    """
    if os.environ.get("ANCLA_FAULT") == name:
        os._exit(137)
