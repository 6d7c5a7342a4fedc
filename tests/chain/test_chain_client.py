"""The chain client against a real Hardhat node."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger import MerkleTree, verify_receipt
from ledger.chain import ChainClient, Registry, load_signer
from ledger.errors import (
    BatchIdConflict,
    ChainUnavailable,
    NotAnchorer,
    SignerRefused,
    TransactionFailed,
)
from tests.support.anchoring import anchor_records, sample_record
from tests.support.hardhat import DEV_KEY_1, free_port, start_node
from tests.support.rpc_endpoint import PickyEndpoint

pytestmark = pytest.mark.chain


def test_anchor_stores_root_emits_event_and_reports_gas(
    registry: Registry, signer: LocalAccount
) -> None:
    assert registry.next_batch_id() == 1
    batch = anchor_records(registry, signer, [sample_record(i) for i in range(5)], batch_id=1)
    result = batch.result
    assert registry.root_of(1) == batch.tree.root
    assert registry.next_batch_id() == 2
    assert (result.batch_id, result.root, result.leaf_count) == (1, batch.tree.root, 5)
    assert result.chain_id == 31337
    assert result.block_hash == registry.client.block_hash_at(result.block_number)
    events = registry.find_anchor_events(batch_id=1)
    assert [(e.tx_hash, e.root, e.leaf_count) for e in events] == [
        (result.tx_hash, batch.tree.root, 5)
    ]
    # The second anchor writes no new nextBatchId slot; that is the tracked figure.
    second = anchor_records(registry, signer, [sample_record(9)], batch_id=2)
    assert 0 < second.result.gas_used <= 60_000


def test_every_proof_verifies_on_chain(registry: Registry, signer: LocalAccount) -> None:
    batch = anchor_records(registry, signer, [sample_record(i) for i in range(13)], batch_id=1)
    for h, proof in zip(batch.tree.hashes, batch.tree.proofs(), strict=True):
        assert registry.verify_on_chain(1, h, proof)
    assert not registry.verify_on_chain(2, batch.tree.hashes[0], batch.tree.proofs()[0])


def test_replayed_or_skipped_batch_id_is_refused_before_sending(
    registry: Registry, signer: LocalAccount
) -> None:
    root = MerkleTree.of(["0x" + "01" * 32]).root
    registry.anchor(signer, batch_id=1, root=root, leaf_count=1)
    with pytest.raises(BatchIdConflict, match="expects batch 2 next, not 1") as replay:
        registry.send_anchor(signer, batch_id=1, root=root, leaf_count=1)
    assert (replay.value.expected, replay.value.given) == (2, 1)
    with pytest.raises(BatchIdConflict, match="expects batch 2 next, not 3"):
        registry.send_anchor(signer, batch_id=3, root=root, leaf_count=1)
    assert registry.root_of(1) == root
    assert registry.next_batch_id() == 2


def test_only_the_anchorer_may_anchor(registry: Registry) -> None:
    outsider: LocalAccount = Account.from_key(DEV_KEY_1)
    with pytest.raises(NotAnchorer, match=f"{outsider.address} does not hold"):
        registry.send_anchor(outsider, batch_id=1, root="0x" + "01" * 32, leaf_count=1)
    assert registry.is_anchorer(outsider.address) is False


def test_zero_root_is_refused(registry: Registry, signer: LocalAccount) -> None:
    with pytest.raises(TransactionFailed, match="would revert with ZeroRoot"):
        registry.send_anchor(signer, batch_id=1, root="0x" + "00" * 32, leaf_count=1)


def test_legacy_transactions_with_explicit_gas_price(
    chain: ChainClient, signer: LocalAccount
) -> None:
    """Besu-style chains take type-0 transactions; the client can send them."""
    address, tx_hash = chain.deploy_registry(signer, legacy=True)
    registry = chain.registry(address)
    result = registry.anchor(
        signer,
        batch_id=1,
        root=MerkleTree.of(["0x" + "02" * 32]).root,
        leaf_count=1,
        legacy=True,
    )
    tx = chain.w3.eth.get_transaction(result.tx_hash)  # type: ignore[arg-type]
    assert tx["type"] == 0
    assert chain.w3.eth.get_transaction(tx_hash)["type"] == 0  # type: ignore[arg-type]


def test_transactions_are_signed_with_libsecp256k1_not_pure_python() -> None:
    # eth-keys falls back to a pure-Python backend without coincurve, silently:
    # signing was then 40% of the anchor worker's CPU.
    from eth_keys import KeyAPI
    from eth_keys.backends import CoinCurveECCBackend

    assert isinstance(KeyAPI().backend, CoinCurveECCBackend)


def test_an_anchor_asks_the_chain_id_once_per_client_not_per_call(
    rpc_url: str, registry: Registry, signer: LocalAccount
) -> None:
    # web3's validation middleware asked eth_chainId before every eth_call,
    # estimate and send: a round trip each to a remote endpoint.
    endpoint = PickyEndpoint(rpc_url)
    try:
        through = ChainClient(endpoint.url).registry(registry.address)
        for batch_id in (1, 2, 3):
            records = [sample_record(10 * batch_id + i) for i in range(2)]
            anchor_records(through, signer, records, batch_id=batch_id)
        assert endpoint.methods["eth_sendRawTransaction"] == 3
        # One for our client, one when web3 first sets up its request cache.
        assert endpoint.methods["eth_chainId"] <= 2, endpoint.methods
    finally:
        endpoint.close()


def test_unreachable_rpc_is_chain_unavailable() -> None:
    client = ChainClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ChainUnavailable, match="RPC endpoint unreachable during eth_chainId"):
        _ = client.chain_id


def test_signer_from_encrypted_keystore(tmp_path: Path) -> None:
    account = Account.create()
    keystore = tmp_path / "key.json"
    import json

    keystore.write_text(json.dumps(Account.encrypt(account.key, "correct horse")))
    assert load_signer(keystore=keystore, password="correct horse").address == account.address
    with pytest.raises(SignerRefused, match="cannot decrypt keystore"):
        load_signer(keystore=keystore, password="wrong")
    with pytest.raises(SignerRefused, match="needs a password"):
        load_signer(keystore=keystore)
    with pytest.raises(SignerRefused, match="not a valid secp256k1 private key") as bad:
        load_signer(key="0x1234")
    assert "1234" not in str(bad.value)
    with pytest.raises(SignerRefused, match="no signer configured"):
        load_signer()


@pytest.fixture(scope="module")
def other_chain(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    node = start_node(tmp_path_factory.mktemp("other-chain"), chain_id=1337)
    yield node
    node.stop()


def test_hardhat_keys_are_refused_outside_chain_31337(other_chain, signer: LocalAccount) -> None:  # type: ignore[no-untyped-def]
    client = ChainClient(other_chain.url)
    assert client.chain_id == 1337
    with pytest.raises(SignerRefused, match="Hardhat's public development keys"):
        client.deploy_registry(signer)
    # A key of the operator's own works on that chain once it has funds.
    own: LocalAccount = Account.create()
    client.w3.provider.make_request("hardhat_setBalance", [own.address, hex(10**20)])  # type: ignore[arg-type]
    address, _ = client.deploy_registry(own)
    registry = client.registry(address)
    batch = anchor_records(registry, own, [sample_record(1)], batch_id=1)
    report = verify_receipt(batch.receipts[0], batch.records[0], rpc_url=other_chain.url)
    assert report.ok
