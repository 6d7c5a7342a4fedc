"""What `ancla verify` asks the chain in bulk, against a real Hardhat node and through
an endpoint that behaves like a picky public provider: JSON-RPC batch requests
(refused by some providers) and eth_getLogs over the whole chain (capped by most)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account.signers.local import LocalAccount

from ledger.chain import RPC_BATCH_LIMIT, ChainClient, Registry
from ledger.errors import ChainError
from tests.support.anchoring import anchor_records, sample_record
from tests.support.rpc_endpoint import PickyEndpoint

pytestmark = pytest.mark.chain

ZERO_ROOT = "0x" + "00" * 32


@pytest.fixture
def no_batches(rpc_url: str) -> Iterator[PickyEndpoint]:
    endpoint = PickyEndpoint(rpc_url, refuse_batches=True)
    yield endpoint
    endpoint.close()


def _anchor_three(registry: Registry, signer: LocalAccount) -> list[tuple[int, int, str]]:
    anchors = []
    for batch_id in (1, 2, 3):
        records = [sample_record(10 * batch_id + i) for i in range(batch_id)]
        result = anchor_records(registry, signer, records, batch_id=batch_id).result
        anchors.append((batch_id, result.block_number, result.tx_hash))
    return anchors


def test_anchor_facts_agree_with_one_call_at_a_time(
    registry: Registry, signer: LocalAccount
) -> None:
    anchors = _anchor_three(registry, signer)
    head = registry.client.head()
    unknown_tx = "0x" + "ab" * 32
    facts = registry.anchor_facts(
        [
            *anchors,
            (4, head + 1_000, unknown_tx),  # never anchored, no such block, no such tx
            (2, None, None),  # only the root asked
        ]
    )
    for fact, (batch_id, block_number, tx_hash) in zip(facts, anchors, strict=False):
        receipt = registry.client.receipt(tx_hash)
        assert receipt is not None
        assert fact.batch_id == batch_id
        assert fact.root == registry.root_of(batch_id) != ZERO_ROOT
        assert fact.block_hash == registry.client.block_hash_at(block_number)
        assert fact.tx_status == receipt["status"] == 1
    missing, root_only = facts[3], facts[4]
    assert (missing.batch_id, missing.root, missing.block_hash, missing.tx_status) == (
        4,
        ZERO_ROOT,
        None,
        None,
    )
    assert (root_only.root, root_only.block_hash, root_only.tx_status) == (
        registry.root_of(2),
        None,
        None,
    )


def test_more_calls_than_one_batch_holds_are_split_and_kept_in_order(
    chain: ChainClient,
) -> None:
    head = chain.head()
    numbers = [n % (head + 1) for n in range(RPC_BATCH_LIMIT * 2 + 7)]
    answers = chain.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    assert len(answers) == len(numbers)
    assert [int(a["number"], 16) for a in answers] == numbers
    assert {a["hash"] for a in answers} == {chain.block_hash_at(n) for n in set(numbers)}


def test_an_endpoint_without_batches_is_asked_one_call_at_a_time(
    registry: Registry, signer: LocalAccount, no_batches: PickyEndpoint
) -> None:
    anchors = _anchor_three(registry, signer)
    expected = registry.anchor_facts(anchors)
    through = ChainClient(no_batches.url).registry(registry.address)
    assert through.anchor_facts(anchors) == expected
    # One refused batch, then the 9 calls one by one.
    assert no_batches.requests == 1 + 3 * len(anchors)


def test_a_call_answered_with_an_error_names_the_call(chain: ChainClient) -> None:
    with pytest.raises(ChainError, match="RPC error during eth_getBlockByNumber: .*"):
        chain.batch([("eth_blockNumber", []), ("eth_getBlockByNumber", ["not a number", False])])


def test_anchor_events_are_read_through_a_provider_that_caps_log_ranges(
    registry: Registry, signer: LocalAccount, rpc_url: str
) -> None:
    # From the block before the registry's first anchor: the session's chain is long
    # (other tests mine thousands of blocks), and the halving of a range from block 0
    # down to single blocks would cost thousands of requests, not test more.
    start = registry.client.head()
    anchors = _anchor_three(registry, signer)
    expected = registry.find_anchor_events(from_block=start)
    assert [(e.batch_id, e.tx_hash) for e in expected] == [(b, tx) for b, _, tx in anchors]
    capped = PickyEndpoint(rpc_url, max_log_range=1)
    try:
        through = ChainClient(capped.url).registry(registry.address)
        assert through.find_anchor_events(from_block=start) == expected
        assert through.find_anchor_events(batch_id=2, from_block=start) == [expected[1]]
        assert capped.refused_log_ranges > 0  # it did refuse, and the halves were asked
    finally:
        capped.close()


def test_logs_refused_even_for_one_block_are_an_error_at_once(
    registry: Registry, rpc_url: str
) -> None:
    refusing = PickyEndpoint(rpc_url, max_log_range=0)
    try:
        through = ChainClient(refusing.url).registry(registry.address)
        with pytest.raises(ChainError, match="query exceeds max block range 0"):
            through.find_anchor_events()
        # The head, the whole range, then one block: no walk through every block.
        assert refusing.requests == 3
    finally:
        refusing.close()
