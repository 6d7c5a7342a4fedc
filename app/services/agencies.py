"""Agencies and their API keys.

A key is ``ancla_<key_id>_<secret>``: the key id finds the row, the secret is
256 random bits stored only as its SHA-256 and compared in constant time. The
full key is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound, Unauthorized
from app.models import Agency, utcnow
from app.records.vocabulary import ruc_is_valid

KEY_PREFIX = "ancla"


@dataclass(frozen=True)
class NewAgency:
    agency: Agency
    api_key: str


def _hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def add_agency(*, session: Session, ruc: str, name: str) -> NewAgency:
    if not ruc_is_valid(ruc):
        raise InvalidInput(f"RUC {ruc!r} is not a valid RUC (11 digits, valid check digit)")
    name = name.strip()
    if not name or len(name) > 500:
        raise InvalidInput("the agency name must have 1 to 500 characters")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    agency = Agency(ruc=ruc, name=name, key_id=key_id, key_hash=_hash_secret(secret))
    session.add(agency)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"an agency with RUC {ruc} already exists") from None
    return NewAgency(agency=agency, api_key=f"{KEY_PREFIX}_{key_id}_{secret}")


def list_agencies(*, session: Session) -> list[Agency]:
    return list(session.scalars(select(Agency).order_by(Agency.id)))


def revoke_agency(*, session: Session, ruc: str) -> Agency:
    agency = session.scalar(select(Agency).where(Agency.ruc == ruc))
    if agency is None:
        raise NotFound(f"no agency with RUC {ruc}")
    if agency.revoked_at is None:
        agency.revoked_at = utcnow()
        session.commit()
    return agency


def rotate_key(*, session: Session, ruc: str) -> NewAgency:
    """Issue a new key for an agency (the old one stops working at once)."""
    agency = session.scalar(select(Agency).where(Agency.ruc == ruc))
    if agency is None:
        raise NotFound(f"no agency with RUC {ruc}")
    secret = secrets.token_urlsafe(32)
    agency.key_id = secrets.token_hex(8)
    agency.key_hash = _hash_secret(secret)
    agency.revoked_at = None
    session.commit()
    return NewAgency(agency=agency, api_key=f"{KEY_PREFIX}_{agency.key_id}_{secret}")


@dataclass(frozen=True)
class KeyHolder:
    """What authentication needs of an agency; cheap to cache, safe to share."""

    id: int
    ruc: str
    key_id: str
    key_hash: bytes
    revoked: bool


def split_key(api_key: str | None) -> tuple[str, str]:
    """(key id, secret) of a well-formed key, or Unauthorized."""
    if not api_key:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    parts = api_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        raise Unauthorized("the API key is malformed")
    return parts[1], parts[2]


def find_key_holder(*, session: Session, key_id: str) -> KeyHolder | None:
    row = session.execute(
        select(Agency.id, Agency.ruc, Agency.key_id, Agency.key_hash, Agency.revoked_at).where(
            Agency.key_id == key_id
        )
    ).one_or_none()
    if row is None:
        return None
    return KeyHolder(row.id, row.ruc, row.key_id, row.key_hash, row.revoked_at is not None)


def check_key(holder: KeyHolder | None, secret: str) -> KeyHolder:
    """The holder if ``secret`` is its key's secret and the key is not revoked."""
    # Compare even when the key id is unknown, so timing does not tell which
    # half was wrong.
    expected = holder.key_hash if holder is not None else b"\0" * 32
    if not hmac.compare_digest(expected, _hash_secret(secret)) or holder is None:
        raise Unauthorized("the API key is not valid")
    if holder.revoked:
        raise Unauthorized("the API key has been revoked")
    return holder


def authenticate(*, session: Session, api_key: str | None) -> KeyHolder:
    """The agency holding ``api_key``, or Unauthorized (missing, malformed, wrong, revoked)."""
    key_id, secret = split_key(api_key)
    return check_key(find_key_holder(session=session, key_id=key_id), secret)
