"""Settings from ``ANCLA_*`` environment variables (and CLI flags), via pydantic-settings.

Defaults are the embedded development set-up (SQLite under ./var, a local
Hardhat node). Outside ``dev`` the class refuses defaults that are unsafe
there, so a production process cannot start half-configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./var/ancla.db"
DEFAULT_RPC_URL = "http://127.0.0.1:8545"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANCLA_", extra="ignore")

    environment: Literal["dev", "test", "production"] = "dev"
    database_url: str = DEFAULT_DATABASE_URL
    rpc_url: str = DEFAULT_RPC_URL
    contract_address: str | None = None
    signer_key: SecretStr | None = None
    signer_keystore: Path | None = None
    signer_password: SecretStr | None = None
    # Blocks on top of (and including) the anchoring block before "final".
    confirmations: int = Field(default=1, ge=1, le=10_000)
    # A batch is sealed at this many records... An anchor costs the same
    # whatever the batch's size (a transaction, about 54,000 gas and 16 ms of
    # the worker's CPU), and on a real chain the worker lands about one per
    # block; a larger batch only adds a few hashes to each receipt's proof
    # (14 instead of 10). With 1,000 the worker sealed 3,200-8,800 records/s
    # under bulk load against 8,700-14,500 with 10,000 (bench/ingest.py), and
    # one anchor per 2 s block would cap it at 500 records/s.
    batch_max_size: int = Field(default=10_000, ge=1, le=100_000)
    # ... or when its oldest record is this old.
    batch_max_age_seconds: float = Field(default=5.0, gt=0, le=86_400)
    # Besu/LACChain: legacy (type 0) transactions, usually with zero gas price.
    legacy_transactions: bool = False
    gas_price_wei: int | None = Field(default=None, ge=0)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    # Per API key and per process; 0 disables. An agency's system sending more
    # than this is misbehaving, and one key must not starve the others.
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # Browsers may read the public API from any origin (open data); agencies'
    # systems call the write endpoints server to server, so no credentials.
    cors_origins: list[str] = ["*"]
    # API key lookups are cached per process (one query fewer per request); a
    # revoked or rotated key stops working within this many seconds. 0: no cache.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    json_logs: bool = True
    # A bulk request of 10,000 orders with items is about 10 MB.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # The public pages (DESIGN §9): the service's own address as printed in QR
    # codes (the absolute URL of /r/{hash}), and the JSON-RPC endpoint visitors'
    # browsers ask the chain through (None: rpc_url). A page's Content-Security-
    # Policy lets scripts connect to that endpoint's origin and nowhere else.
    public_url: str = Field(default=DEFAULT_PUBLIC_URL, pattern=r"^https?://[^?#\s]+$")
    public_rpc_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")

    @property
    def browser_rpc_url(self) -> str:
        """The RPC endpoint the pages give visitors' browsers."""
        return self.public_rpc_url or self.rpc_url

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> Settings:
        if self.environment != "production":
            return self
        problems = []
        if self.database_url == DEFAULT_DATABASE_URL:
            problems.append("ANCLA_DATABASE_URL must be set (not the dev SQLite file)")
        if self.rpc_url == DEFAULT_RPC_URL:
            problems.append("ANCLA_RPC_URL must be set (not the local dev node)")
        if not self.contract_address:
            problems.append("ANCLA_CONTRACT_ADDRESS must be set")
        if self.confirmations < 2:
            problems.append("ANCLA_CONFIRMATIONS must be at least 2 in production")
        if problems:
            raise ValueError("; ".join(problems))
        return self
