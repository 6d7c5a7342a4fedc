"""The process's long-lived parts: database engine, chain client, anchor worker thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine

from app.api.middleware import RateLimiter
from app.db import (
    SessionFactory,
    dispose_engine,
    make_engine,
    make_read_engine,
    make_session_factory,
)
from app.services.agencies import KeyHolder
from app.services.ingest import GroupCommitter
from app.settings import Settings
from ledger.chain import ChainClient, Registry, load_signer
from ledger.errors import LedgerError

# How long a read of the chain's genesis hash is trusted before reading it again.
_GENESIS_TTL_SECONDS = 10.0
# Bound on cached API key lookups (an attacker cannot grow it: only valid
# key ids are cached).
_KEY_CACHE_SIZE = 10_000

T = TypeVar("T")

if TYPE_CHECKING:
    from app.services.anchoring import AnchorWorker

log = logging.getLogger("ancla")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: SessionFactory
    # Public reads of one statement (app.db.make_read_engine): the same
    # engine on SQLite, autocommit connections of their own on PostgreSQL.
    read_engine: Engine
    read_session_factory: SessionFactory
    client: ChainClient
    rate_limiter: RateLimiter
    recorder: GroupCommitter
    _worker_thread: threading.Thread | None = None
    _genesis: str | None = None
    _keys: dict[str, tuple[float, KeyHolder]] = field(default_factory=dict)
    _genesis_read_at: float = float("-inf")
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        session_factory = make_session_factory(engine)
        read_engine = make_read_engine(engine)
        return cls(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            read_engine=read_engine,
            read_session_factory=(
                session_factory if read_engine is engine else make_session_factory(read_engine)
            ),
            recorder=GroupCommitter(session_factory),
            client=ChainClient(settings.rpc_url, timeout=settings.rpc_timeout_seconds),
            rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        )

    def chain_genesis(self) -> str | None:
        """The genesis hash of the chain at ANCLA_RPC_URL, re-read at most every 10 s.

        Receipts are only served as anchored when the batches' chain is this
        chain, so a reset chain stops vouching for old anchors within seconds,
        even before the worker has noticed. None when the chain cannot be read.
        """
        now = time.monotonic()
        if now - self._genesis_read_at > _GENESIS_TTL_SECONDS:
            try:
                self._genesis = self.client.genesis_hash()
            except LedgerError:
                self._genesis = None
            self._genesis_read_at = now
        return self._genesis

    def read(self, service: Callable[..., T], **arguments: Any) -> T:
        """Call a read service with a read session and the chain's genesis (one
        thread, blocking): ``service(session=..., genesis=..., **arguments)``."""
        genesis = self.chain_genesis()
        with self.read_session_factory() as session:
            return service(session=session, genesis=genesis, **arguments)

    def key_holder(self, key_id: str) -> tuple[bool, KeyHolder | None]:
        """(cached?, holder) for an API key id (see Settings.api_key_cache_seconds)."""
        entry = self._keys.get(key_id)
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def remember_key_holder(self, key_id: str, holder: KeyHolder) -> None:
        if len(self._keys) >= _KEY_CACHE_SIZE:
            self._keys.clear()
        ttl = self.settings.api_key_cache_seconds
        if ttl > 0:
            self._keys[key_id] = (time.monotonic() + ttl, holder)

    def registry(self) -> Registry | None:
        address = self.settings.contract_address
        return self.client.registry(address) if address else None

    def make_worker(self) -> AnchorWorker:
        from app.services.anchoring import AnchorWorker, WorkerConfig

        settings = self.settings
        registry = self.registry()
        if registry is None:
            raise RuntimeError("ANCLA_CONTRACT_ADDRESS is not set: deploy with `ancla deploy`")
        signer = load_signer(
            key=settings.signer_key.get_secret_value() if settings.signer_key else None,
            keystore=settings.signer_keystore,
            password=settings.signer_password.get_secret_value()
            if settings.signer_password
            else None,
        )
        return AnchorWorker(
            session_factory=self.session_factory,
            client=self.client,
            registry=registry,
            signer=signer,
            config=WorkerConfig(
                max_size=settings.batch_max_size,
                max_age_seconds=settings.batch_max_age_seconds,
                confirmations=settings.confirmations,
                legacy=settings.legacy_transactions,
                gas_price=settings.gas_price_wei,
                # Never sleep past the batch age limit: sealing stays on time.
                idle_interval=min(1.0, settings.batch_max_age_seconds),
            ),
        )

    def start_worker(self) -> None:
        worker = self.make_worker()
        self._stop.clear()
        self._worker_thread = threading.Thread(
            target=worker.run, args=(self.engine, self._stop), name="anchor-worker", daemon=True
        )
        self._worker_thread.start()

    def stop(self) -> None:
        self.recorder.close()
        self._stop.set()
        if self._worker_thread is not None:
            self._worker_thread.join(timeout=30)
            self._worker_thread = None
        dispose_engine(self.engine)
        dispose_engine(self.read_engine)
