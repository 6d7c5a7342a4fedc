"""`ancla dev`: the embedded default, everything on one machine.

SQLite under ./var, a local Hardhat node (started here unless --rpc is
given, stopped on exit), AnchorRegistry deployed once per chain and
remembered in ./var/dev-chain.json, a demo agency with a fresh key, and the
API + anchor worker on 127.0.0.1:8000.

A Hardhat node keeps its chain in memory, so every start is a new chain. The
worker notices (another genesis hash) and anchors every batch again on it, so
no receipt ever points at a chain that no longer has it.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from app.db import make_engine, make_session_factory
from app.devchain import DEV_KEY_0, HardhatNode, start_node
from app.models import Agency
from app.records.purchase_order import PURCHASE_ORDER_EXAMPLE
from app.services.agencies import add_agency, rotate_key
from ledger.chain import ChainClient, load_signer

DEMO_AGENCY_RUC = "20600027426"
DEMO_AGENCY_NAME = "MINISTERIO PÚBLICO-GERENCIA ADMINISTRATIVA DE SAN MARTÍN"
DEFAULT_CHAIN_PORT = 8545


@dataclass
class DevChain:
    rpc_url: str
    contract: str
    node: HardhatNode | None


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_chain(var: Path, rpc_url: str | None) -> tuple[str, HardhatNode | None]:
    if rpc_url:
        return rpc_url, None
    port = DEFAULT_CHAIN_PORT if port_is_free(DEFAULT_CHAIN_PORT) else None
    node = start_node(var / "logs", port=port)
    return node.url, node


def ensure_contract(var: Path, rpc_url: str, signer_key: str) -> str:
    """The registry on this chain: reuse the remembered one if its code is there."""
    client = ChainClient(rpc_url)
    state_file = var / "dev-chain.json"
    genesis = client.genesis_hash()
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state.get("genesis_hash") == genesis and client.code_at(state["contract"]):
            return str(state["contract"])
    address, _ = client.deploy_registry(load_signer(key=signer_key))
    state_file.write_text(
        json.dumps({"rpc_url": rpc_url, "genesis_hash": genesis, "contract": address}, indent=2)
    )
    return address


def demo_agency_key(database_url: str) -> str:
    """A fresh key for the demo agency (keys are stored hashed, so a new one each start)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with make_session_factory(engine)() as session:
            exists = session.scalar(select(Agency).where(Agency.ruc == DEMO_AGENCY_RUC))
            if exists is None:
                return add_agency(
                    session=session, ruc=DEMO_AGENCY_RUC, name=DEMO_AGENCY_NAME
                ).api_key
            return rotate_key(session=session, ruc=DEMO_AGENCY_RUC).api_key
    finally:
        engine.dispose()


# The DESIGN §4 example order (buyer: the demo agency), as the OpenAPI docs show it.
DEMO_ORDER = PURCHASE_ORDER_EXAMPLE


def curl_example(base_url: str, api_key: str) -> str:
    body = json.dumps(DEMO_ORDER, ensure_ascii=False)
    return (
        f"curl -sS -X POST {base_url}/v1/purchase-orders \\\n"
        f"  -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'\n"
        f"# then: curl -sS {base_url}/v1/receipts/<hash from the answer>"
    )


__all__ = [
    "DEV_KEY_0",
    "DevChain",
    "curl_example",
    "demo_agency_key",
    "ensure_contract",
    "start_chain",
]
