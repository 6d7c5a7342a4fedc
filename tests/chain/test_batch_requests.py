"""JSON-RPC batch requests (what `ancla verify` asks the chain per window of anchors),
against a real Hardhat node, and through an endpoint that refuses batches."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from eth_account.signers.local import LocalAccount

from ledger.chain import RPC_BATCH_LIMIT, ChainClient, Registry
from ledger.errors import ChainError
from tests.support.anchoring import anchor_records, sample_record

pytestmark = pytest.mark.chain

ZERO_ROOT = "0x" + "00" * 32


class NoBatchesEndpoint:
    """An HTTP JSON-RPC endpoint in front of the node that answers any batch with
    one error object, as providers that do not take batches do; counts requests."""

    def __init__(self, upstream: str) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                outer.requests += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if json.loads(body).__class__ is list:
                    answer = json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": None,
                            "error": {"code": -32600, "message": "batch requests not supported"},
                        }
                    ).encode()
                else:
                    answer = requests.post(
                        upstream,
                        data=body,
                        headers={"Content-Type": "application/json"},
                        timeout=10,
                    ).content
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def no_batches(rpc_url: str) -> Iterator[NoBatchesEndpoint]:
    endpoint = NoBatchesEndpoint(rpc_url)
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
    registry: Registry, signer: LocalAccount, no_batches: NoBatchesEndpoint
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
