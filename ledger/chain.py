"""The only module that talks to the chain (web3.py).

Everything else in ledger/ is pure: this adapter fetches what verification
needs into plain data (:class:`AnchorEvidence`), sends anchoring transactions
signed with a locally held key, and maps every web3 / transport exception to
:class:`ledger.errors.ChainError` so no web3 exception leaks to a user.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import requests
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.exceptions import (
    BlockNotFound,
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.types import FilterParams, RPCEndpoint, TxParams, TxReceipt

from ledger.anchors import Anchor, AnchorEvent
from ledger.errors import (
    BatchIdConflict,
    ChainError,
    ChainUnavailable,
    NotAnchorer,
    SignerRefused,
    TransactionFailed,
)
from ledger.hashing import keccak256, to_hex

__all__ = [
    "ANCHORED_EVENT_TOPIC",
    "AnchorEvidence",
    "AnchorEvent",
    "AnchorFacts",
    "Anchor",
    "ChainClient",
    "Registry",
    "SentTransaction",
    "load_signer",
    "registry_artifact",
    "HARDHAT_CHAIN_ID",
]

HARDHAT_CHAIN_ID = 31337
# Hardhat's and Anvil's public development mnemonic: anyone holds these keys.
_DEV_MNEMONIC = "test test test test test test test test test test test junk"
_DEV_ACCOUNTS = 20

ANCHORED_EVENT_SIGNATURE = "BatchAnchored(uint256,bytes32,uint256)"
ANCHORED_EVENT_TOPIC = keccak256(ANCHORED_EVENT_SIGNATURE.encode())

T = TypeVar("T")


@cache
def registry_artifact() -> dict[str, Any]:
    """The committed AnchorRegistry ABI and bytecode (ledger/contracts/)."""
    text = resources.files("ledger").joinpath("contracts/AnchorRegistry.json").read_text("utf-8")
    artifact: dict[str, Any] = json.loads(text)
    return artifact


@cache
def _custom_errors() -> dict[bytes, tuple[str, list[str]]]:
    """4-byte selector -> (error name, argument types) for the registry's ABI."""
    errors: dict[bytes, tuple[str, list[str]]] = {}
    for entry in registry_artifact()["abi"]:
        if entry["type"] == "error":
            types = [arg["type"] for arg in entry["inputs"]]
            selector = keccak256(f"{entry['name']}({','.join(types)})".encode())[:4]
            errors[selector] = (entry["name"], types)
    return errors


def decode_revert(data: object) -> tuple[str, tuple[Any, ...]] | None:
    """Decode revert data of one of the registry's custom errors, if it is one.

    web3 hands revert data over as a hex string, or as the node's error
    object ``{"message": ..., "data": "0x..."}`` depending on the node.
    """
    if isinstance(data, dict):
        data = data.get("data")
    if not isinstance(data, str):
        return None
    try:
        raw = bytes.fromhex(data.removeprefix("0x"))
    except ValueError:
        return None
    known = _custom_errors().get(raw[:4])
    if known is None:
        return None
    name, types = known
    try:
        return name, tuple(abi_decode(types, raw[4:]))
    except Exception:  # noqa: BLE001 - malformed revert data is "not one of ours"
        return None


@cache
def _dev_addresses() -> frozenset[str]:
    seed = seed_from_mnemonic(_DEV_MNEMONIC, "")
    return frozenset(
        Account.from_key(key_from_seed(seed, f"m/44'/60'/0'/0/{i}")).address
        for i in range(_DEV_ACCOUNTS)
    )


def is_development_key(address: str) -> bool:
    """Whether ``address`` belongs to Hardhat's public development mnemonic."""
    return to_checksum_address(address) in _dev_addresses()


def check_signer_allowed(signer: LocalAccount, chain_id: int) -> None:
    """Refuse the public Hardhat keys anywhere but a local chain (id 31337).

    Those keys are printed by every Hardhat node: on a real network, anyone
    could anchor with them.
    """
    if chain_id != HARDHAT_CHAIN_ID and is_development_key(signer.address):
        raise SignerRefused(
            f"signer {signer.address} is one of Hardhat's public development keys; "
            f"it may only be used on the local chain {HARDHAT_CHAIN_ID}, not on chain {chain_id}"
        )


def load_signer(
    *, key: str | None = None, keystore: Path | None = None, password: str | None = None
) -> LocalAccount:
    """A local signing key, from a hex private key or an encrypted keystore file."""
    if key and keystore:
        raise SignerRefused("give a signer key or a keystore, not both")
    if keystore is not None:
        try:
            encrypted = json.loads(keystore.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise SignerRefused(f"cannot read keystore {keystore}: {exc}") from exc
        if password is None:
            raise SignerRefused("the keystore needs a password (ANCLA_SIGNER_PASSWORD)")
        try:
            private_key = Account.decrypt(encrypted, password)
        except (ValueError, KeyError, TypeError) as exc:
            # Never echo the password; the library's message does not contain it.
            raise SignerRefused(f"cannot decrypt keystore {keystore}: {exc}") from exc
        account: LocalAccount = Account.from_key(private_key)
        return account
    if not key:
        raise SignerRefused("no signer configured: set ANCLA_SIGNER_KEY or ANCLA_SIGNER_KEYSTORE")
    try:
        account = Account.from_key(key)
    except (ValueError, TypeError):
        # The message must not contain the key itself.
        raise SignerRefused("the signer key is not a valid secp256k1 private key") from None
    return account


@dataclass(frozen=True, slots=True)
class SentTransaction:
    tx_hash: str
    nonce: int
    sender: str


@dataclass(frozen=True, slots=True)
class AnchorEvidence:
    """What the chain says about one anchor claim, fetched in one go.

    ``ledger.verify`` compares it with the receipt; nothing here is judged.
    """

    chain_id: int
    head_number: int
    contract_has_code: bool
    root_on_chain: str | None
    tx_found: bool
    tx_status: int | None
    tx_to: str | None
    tx_block_number: int | None
    tx_block_hash: str | None
    events: tuple[AnchorEvent, ...]
    block_hash_at_height: str | None
    block_timestamp: int | None


@dataclass(frozen=True, slots=True)
class AnchorFacts:
    """What the chain says now about one stored anchor (``Registry.anchor_facts``).

    ``None`` means the chain has no such thing: no block at that height, no
    receipt for that transaction, or the question was not asked.
    """

    batch_id: int
    block_hash: str | None  # the canonical block hash at the anchor's height
    tx_status: int | None  # the anchoring transaction's receipt status
    root: str  # rootOf(batch_id) on the registry (0x00…00 if never anchored)


# JSON-RPC calls per batch request: public providers commonly cap batches at 100.
RPC_BATCH_LIMIT = 99


def _field(answer: Any, name: str) -> str:
    """A hex string field of a raw JSON-RPC object, or ChainUnavailable."""
    value = answer.get(name) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainUnavailable(f"unusable RPC answer: no {name} in {str(answer)[:200]}")
    return value


def _word(answer: Any, what: str) -> str:
    """A raw eth_call result holding one 32-byte word, as 0x + 64 hex digits."""
    if not isinstance(answer, str) or len(answer) != 66 or not answer.startswith("0x"):
        raise ChainUnavailable(f"unusable RPC answer during {what}: {str(answer)[:200]}")
    return answer.lower()


def _hex(value: Any) -> str:
    """HexBytes / bytes / str -> 0x + lowercase hex."""
    if isinstance(value, bytes | bytearray):
        return to_hex(bytes(value))
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


@contextmanager
def _rpc(what: str) -> Iterator[None]:
    """Map transport and web3 failures to ChainError subclasses, naming the call."""
    try:
        yield
    except ChainError:
        raise
    except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as exc:
        raise ChainUnavailable(f"RPC endpoint unreachable during {what}: {exc}") from exc
    except requests.RequestException as exc:
        raise ChainUnavailable(f"RPC transport error during {what}: {exc}") from exc
    except Web3RPCError as exc:
        raise ChainError(f"RPC error during {what}: {exc.message or exc}") from exc
    except (Web3Exception, ValueError, TypeError, KeyError, AttributeError) as exc:
        # A node answering garbage surfaces as decoding errors of every kind.
        raise ChainUnavailable(f"unusable RPC answer during {what}: {exc}") from exc


class ChainClient:
    """A JSON-RPC connection to one EVM chain."""

    def __init__(self, rpc_url: str, *, timeout: float = 10.0) -> None:
        self.rpc_url = rpc_url
        self.w3 = Web3(
            Web3.HTTPProvider(
                rpc_url,
                request_kwargs={"timeout": timeout},
                # Retries are the caller's policy (the worker backs off); a
                # verifier must fail fast when the node is down.
                exception_retry_configuration=None,
                # web3's validation middleware asks eth_chainId before every
                # eth_call, eth_estimateGas and send: 4 of the 12 requests of
                # an anchor. An endpoint's chain id does not change, so that
                # one answer is cached (web3's own cache, nothing else in it).
                cache_allowed_requests=True,
                cacheable_requests={RPCEndpoint("eth_chainId")},
            )
        )
        self._chain_id: int | None = None

    def call(self, what: str, fn: Callable[[], T]) -> T:
        with _rpc(what):
            return fn()

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.call("eth_chainId", lambda: int(self.w3.eth.chain_id))
        return self._chain_id

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Raw JSON-RPC results of ``calls``, sent as batch requests of at most
        RPC_BATCH_LIMIT calls (one at a time if the endpoint refuses batches).

        Any call answered with an error raises ChainError naming it.
        """
        results: list[Any] = []
        provider = cast(Any, self.w3.provider)
        for start in range(0, len(calls), RPC_BATCH_LIMIT):
            chunk = [(cast(RPCEndpoint, m), p) for m, p in calls[start : start + RPC_BATCH_LIMIT]]
            what = f"a batch of {len(chunk)} calls ({chunk[0][0]}…)"
            answers = self.call(what, partial(provider.make_batch_request, chunk))
            if not isinstance(answers, list):
                # The endpoint does not take batches: ask one call at a time.
                answers = [
                    self.call(method, partial(provider.make_request, method, params))
                    for method, params in chunk
                ]
            if len(answers) != len(chunk):
                raise ChainUnavailable(f"unusable RPC answer during {what}: {len(answers)} answers")
            for (method, _), answer in zip(chunk, answers, strict=True):
                if not isinstance(answer, dict) or "error" in answer or "result" not in answer:
                    error = answer.get("error") if isinstance(answer, dict) else answer
                    raise ChainError(f"RPC error during {method}: {error}")
                results.append(answer["result"])
        return results

    def head(self) -> int:
        return self.call("eth_blockNumber", lambda: int(self.w3.eth.block_number))

    def block_hash_at(self, number: int) -> str | None:
        def fetch() -> str | None:
            try:
                block = self.w3.eth.get_block(number)
            except BlockNotFound:
                return None
            return _hex(block["hash"])

        return self.call("eth_getBlockByNumber", fetch)

    def genesis_hash(self) -> str:
        found = self.block_hash_at(0)
        if found is None:
            raise ChainUnavailable("the node has no genesis block")
        return found

    def code_at(self, address: str) -> bytes:
        return self.call(
            "eth_getCode", lambda: bytes(self.w3.eth.get_code(to_checksum_address(address)))
        )

    def registry(self, address: str) -> Registry:
        if not is_address(address):
            raise ChainError(f"not an address: {address!r}")
        return Registry(self, to_checksum_address(address))

    # -- sending ----------------------------------------------------------------

    def _fees(
        self, *, legacy: bool, gas_price: int | None, multiplier: float = 1.0
    ) -> dict[str, Any]:
        """Fee fields: legacy gasPrice (Besu/LACChain, zero-gas chains) or EIP-1559.

        ``multiplier`` > 1 prices a replacement of a stuck transaction (nodes
        require at least +10% on every fee field to replace one).
        """
        fees = self._base_fees(legacy=legacy, gas_price=gas_price)
        if multiplier != 1.0:
            fees = {name: int(value * multiplier) + 1 for name, value in fees.items()}
        return fees

    def _base_fees(self, *, legacy: bool, gas_price: int | None) -> dict[str, Any]:
        if gas_price is not None:
            return {"gasPrice": gas_price}
        latest = self.call("eth_getBlockByNumber", lambda: self.w3.eth.get_block("latest"))
        base_fee = latest.get("baseFeePerGas")
        if legacy or base_fee is None:
            return {"gasPrice": self.call("eth_gasPrice", lambda: self.w3.eth.gas_price)}
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (Web3Exception, ValueError):
            priority = Web3.to_wei(1, "gwei")
        return {"maxFeePerGas": 2 * int(base_fee) + priority, "maxPriorityFeePerGas": priority}

    def send(
        self,
        signer: LocalAccount,
        tx: dict[str, Any],
        *,
        what: str,
        nonce: int | None = None,
        legacy: bool = False,
        gas_price: int | None = None,
        fee_multiplier: float = 1.0,
    ) -> SentTransaction:
        """Sign ``tx`` locally and broadcast it; the node never holds the key."""
        check_signer_allowed(signer, self.chain_id)
        with _rpc(what):
            if nonce is None:
                nonce = self.w3.eth.get_transaction_count(signer.address, "pending")
            full: dict[str, Any] = {
                **tx,
                "from": signer.address,
                "chainId": self.chain_id,
                "nonce": nonce,
                **self._fees(legacy=legacy, gas_price=gas_price, multiplier=fee_multiplier),
            }
            try:
                estimate = self.w3.eth.estimate_gas(cast(TxParams, full))
            except (ContractCustomError, ContractLogicError) as exc:
                raise _revert_error(exc, what) from exc
            # Estimates are exact on a quiet chain; the margin covers state
            # changing between estimate and inclusion.
            full["gas"] = int(estimate * 1.25) + 10_000
            signed = signer.sign_transaction(full)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        return SentTransaction(tx_hash=_hex(tx_hash), nonce=int(nonce), sender=signer.address)

    def wait(self, tx_hash: str, *, timeout: float = 120.0, poll: float = 0.1) -> TxReceipt:
        """The receipt of a mined transaction; TransactionFailed if it reverted."""
        with _rpc("eth_getTransactionReceipt"):
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    tx_hash,  # type: ignore[arg-type]
                    timeout=timeout,
                    poll_latency=poll,
                )
            except TimeExhausted as exc:
                raise TransactionFailed(
                    f"transaction {tx_hash} was not mined within {timeout:g} s"
                ) from exc
        if receipt["status"] != 1:
            raise TransactionFailed(f"transaction {tx_hash} reverted")
        return receipt

    def transaction_known(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction (mined, or waiting in its mempool)."""

        def fetch() -> bool:
            try:
                self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return False
            return True

        return self.call("eth_getTransactionByHash", fetch)

    def transaction_status(self, tx_hash: str) -> int | None:
        """The mined transaction's status (1 succeeded, 0 reverted); None if not mined."""
        receipt = self.receipt(tx_hash)
        return None if receipt is None else int(receipt["status"])

    def block_timestamp(self, block_hash: str) -> int:
        """The timestamp of the block with this hash; ChainUnavailable if the node lacks it."""

        def fetch() -> int:
            try:
                block = self.w3.eth.get_block(block_hash)  # type: ignore[arg-type]
            except BlockNotFound:
                raise ChainUnavailable(f"the node has no block {block_hash}") from None
            return int(block["timestamp"])

        return self.call("eth_getBlockByHash", fetch)

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        def fetch() -> TxReceipt | None:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None

        return self.call("eth_getTransactionReceipt", fetch)

    def deploy_registry(
        self,
        signer: LocalAccount,
        *,
        admin: str | None = None,
        anchorer: str | None = None,
        legacy: bool = False,
        gas_price: int | None = None,
        timeout: float = 120.0,
    ) -> tuple[str, str]:
        """Deploy AnchorRegistry; returns (contract address, deployment tx hash).

        ``admin`` and ``anchorer`` default to the signer.
        """
        artifact = registry_artifact()
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        with _rpc("deploy"):
            tx = factory.constructor(
                to_checksum_address(admin or signer.address),
                to_checksum_address(anchorer or signer.address),
            ).build_transaction({"from": signer.address, "gas": 0, "gasPrice": 0})
        sent = self.send(
            signer, {"data": tx["data"]}, what="deploy", legacy=legacy, gas_price=gas_price
        )
        receipt = self.wait(sent.tx_hash, timeout=timeout)
        address = receipt["contractAddress"]
        if address is None:
            raise TransactionFailed(f"deployment {sent.tx_hash} created no contract")
        return to_checksum_address(address), sent.tx_hash


def _revert_error(exc: ContractLogicError, what: str) -> ChainError:
    decoded = decode_revert(getattr(exc, "data", None))
    if decoded is not None:
        name, args = decoded
        if name == "UnexpectedBatchId":
            expected, given = int(args[0]), int(args[1])
            return BatchIdConflict(
                f"the registry expects batch {expected} next, not {given}",
                expected=expected,
                given=given,
            )
        if name == "AccessControlUnauthorizedAccount":
            return NotAnchorer(
                f"{to_checksum_address(args[0])} does not hold the registry's anchorer role"
            )
        return TransactionFailed(f"{what} would revert with {name}{args}")
    return TransactionFailed(f"{what} would revert: {exc}")


class Registry:
    """One deployed AnchorRegistry."""

    def __init__(self, client: ChainClient, address: str) -> None:
        self.client = client
        self.address = address
        self.contract = client.w3.eth.contract(address=address, abi=registry_artifact()["abi"])  # type: ignore[call-overload]

    def next_batch_id(self, *, block: int | None = None) -> int:
        """The id the registry accepts next (at ``block``, default the latest): every
        id below it has been anchored."""
        at: Any = "latest" if block is None else block
        return self.client.call(
            "nextBatchId",
            lambda: int(self.contract.functions.nextBatchId().call(block_identifier=at)),
        )

    def root_of(self, batch_id: int) -> str:
        return self.client.call(
            "rootOf", lambda: _hex(self.contract.functions.rootOf(batch_id).call())
        )

    def anchor_facts(
        self, anchors: Sequence[tuple[int, int | None, str | None]]
    ) -> list[AnchorFacts]:
        """For each (batch id, block number, tx hash): the block hash at that height,
        the transaction's status and rootOf(batch id), asked in JSON-RPC batch requests.

        A bulk audit asks this for every anchor; one HTTP round trip per ~33 anchors
        instead of three each (the node still answers every call).
        """
        calls: list[tuple[str, list[Any]]] = []
        for batch_id, block_number, tx_hash in anchors:
            data = self.contract.encode_abi("rootOf", args=[batch_id])
            calls.append(("eth_call", [{"to": self.address, "data": data}, "latest"]))
            if block_number is not None:
                calls.append(("eth_getBlockByNumber", [hex(block_number), False]))
            if tx_hash is not None:
                calls.append(("eth_getTransactionReceipt", [tx_hash]))
        answers = iter(self.client.batch(calls))
        facts = []
        for batch_id, block_number, tx_hash in anchors:
            root = _word(next(answers), "rootOf")
            block = next(answers) if block_number is not None else None
            receipt = next(answers) if tx_hash is not None else None
            facts.append(
                AnchorFacts(
                    batch_id=batch_id,
                    block_hash=None if block is None else _hex(_field(block, "hash")),
                    tx_status=None if receipt is None else int(_field(receipt, "status"), 16),
                    root=root,
                )
            )
        return facts

    def verify_on_chain(self, batch_id: int, record_hash: str, proof: list[str]) -> bool:
        return self.client.call(
            "verify",
            lambda: bool(self.contract.functions.verify(batch_id, record_hash, proof).call()),
        )

    def is_anchorer(self, address: str) -> bool:
        def fetch() -> bool:
            role = self.contract.functions.ANCHORER_ROLE().call()
            return bool(self.contract.functions.hasRole(role, to_checksum_address(address)).call())

        return self.client.call("hasRole", fetch)

    def send_anchor(
        self,
        signer: LocalAccount,
        *,
        batch_id: int,
        root: str,
        leaf_count: int,
        nonce: int | None = None,
        legacy: bool = False,
        gas_price: int | None = None,
        fee_multiplier: float = 1.0,
    ) -> SentTransaction:
        """Broadcast anchor(batch_id, root, leaf_count); simulated first, so a
        replayed or out-of-sequence batch id raises BatchIdConflict before sending."""
        data = self.contract.encode_abi("anchor", args=[batch_id, root, leaf_count])
        return self.client.send(
            signer,
            {"to": self.address, "data": data},
            what=f"anchor(batch {batch_id})",
            nonce=nonce,
            legacy=legacy,
            gas_price=gas_price,
            fee_multiplier=fee_multiplier,
        )

    def _anchor_from_receipt(self, receipt: TxReceipt, *, batch_id: int) -> Anchor:
        """The Anchor of a mined anchoring transaction, from its receipt."""
        events = [e for e in self._decode_logs(receipt) if e.batch_id == batch_id]
        if not events:
            raise TransactionFailed(
                f"transaction {_hex(receipt['transactionHash'])} emitted no BatchAnchored "
                f"for batch {batch_id}"
            )
        return self._anchor(events[0], gas_used=int(receipt["gasUsed"]))

    def _anchor(self, event: AnchorEvent, *, gas_used: int | None) -> Anchor:
        return Anchor(
            chain_id=self.client.chain_id,
            contract=self.address,
            batch_id=event.batch_id,
            root=event.root,
            leaf_count=event.leaf_count,
            tx_hash=event.tx_hash,
            block_number=event.block_number,
            block_hash=event.block_hash,
            log_index=event.log_index,
            timestamp=self.client.block_timestamp(event.block_hash),
            gas_used=gas_used,
        )

    def wait_for_anchor(
        self, tx_hash: str, *, batch_id: int, timeout: float = 120.0, poll: float = 0.1
    ) -> Anchor:
        """Wait for an anchoring transaction to be mined; its Anchor.

        Raises TransactionFailed if it reverted, emitted no anchor for
        ``batch_id``, or was not mined within ``timeout``.
        """
        receipt = self.client.wait(tx_hash, timeout=timeout, poll=poll)
        return self._anchor_from_receipt(receipt, batch_id=batch_id)

    def anchor_of(self, event: AnchorEvent) -> Anchor:
        """The Anchor an anchoring event found on chain stands for (block time, gas)."""
        receipt = self.client.receipt(event.tx_hash)
        return self._anchor(event, gas_used=None if receipt is None else int(receipt["gasUsed"]))

    def anchor(
        self,
        signer: LocalAccount,
        *,
        batch_id: int,
        root: str,
        leaf_count: int,
        legacy: bool = False,
        gas_price: int | None = None,
        timeout: float = 120.0,
    ) -> Anchor:
        """Send, wait for, and decode one anchoring transaction."""
        sent = self.send_anchor(
            signer,
            batch_id=batch_id,
            root=root,
            leaf_count=leaf_count,
            legacy=legacy,
            gas_price=gas_price,
        )
        return self.wait_for_anchor(sent.tx_hash, batch_id=batch_id, timeout=timeout)

    def _decode_logs(self, receipt: TxReceipt) -> list[AnchorEvent]:
        return [event for log in receipt["logs"] if (event := self._decode_log(log)) is not None]

    def _decode_log(self, log: Any) -> AnchorEvent | None:
        """Decode a BatchAnchored log of *any* contract (the caller checks the address)."""
        topics = log["topics"]
        if len(topics) != 3 or bytes(topics[0]) != ANCHORED_EVENT_TOPIC:
            return None
        data = bytes(log["data"])
        if len(data) != 32:
            return None
        return AnchorEvent(
            contract=to_checksum_address(log["address"]),
            batch_id=int.from_bytes(bytes(topics[1]), "big"),
            root=_hex(topics[2]),
            leaf_count=int.from_bytes(data, "big"),
            tx_hash=_hex(log["transactionHash"]),
            block_number=int(log["blockNumber"]),
            block_hash=_hex(log["blockHash"]),
            log_index=int(log["logIndex"]),
        )

    def find_anchor_events(
        self, *, batch_id: int | None = None, from_block: int = 0, to_block: int | None = None
    ) -> list[AnchorEvent]:
        """BatchAnchored logs of this registry (optionally for one batch id), oldest first.

        ``to_block`` defaults to the current head. A provider that refuses the
        range (public endpoints cap eth_getLogs by blocks or by results) is asked
        again for each half, down to single blocks, so a whole-ledger audit works
        through any endpoint; an unreachable node is not retried.
        """
        topics: list[Any] = [to_hex(ANCHORED_EVENT_TOPIC)]
        if batch_id is not None:
            topics.append(to_hex(batch_id.to_bytes(32, "big")))
        end = self.client.head() if to_block is None else to_block
        try:
            return self._logs(topics, from_block, end)
        except ChainUnavailable:
            raise
        except ChainError:
            # Refused. If even one block is refused, it is not about the range.
            self._logs(topics, from_block, from_block)
            return self._logs_in_halves(topics, from_block, end)

    def _logs(self, topics: list[Any], start: int, end: int) -> list[AnchorEvent]:
        def fetch() -> list[AnchorEvent]:
            query = {"address": self.address, "topics": topics, "fromBlock": start, "toBlock": end}
            logs = self.client.w3.eth.get_logs(cast(FilterParams, query))
            return [e for log in logs if (e := self._decode_log(log)) is not None]

        return self.client.call(f"eth_getLogs (blocks {start}-{end})", fetch)

    def _logs_in_halves(self, topics: list[Any], start: int, end: int) -> list[AnchorEvent]:
        middle = (start + end) // 2
        found: list[AnchorEvent] = []
        for low, high in ((start, middle), (middle + 1, end)):
            if low > high:
                continue
            try:
                found += self._logs(topics, low, high)
            except ChainUnavailable:
                raise
            except ChainError:
                if low == high:
                    raise
                found += self._logs_in_halves(topics, low, high)
        return found

    def evidence(self, *, batch_id: int, tx_hash: str, block_number: int) -> AnchorEvidence:
        """Fetch everything needed to judge one anchor claim against this registry."""
        client = self.client
        chain_id = client.chain_id
        head = client.head()
        has_code = len(client.code_at(self.address)) > 0
        root = self.root_of(batch_id) if has_code else None
        receipt = client.receipt(tx_hash)
        block_hash = client.block_hash_at(block_number)
        timestamp: int | None = None
        if block_hash is not None:
            block = client.call(
                "eth_getBlockByNumber", lambda: client.w3.eth.get_block(block_number)
            )
            timestamp = int(block["timestamp"])
        return AnchorEvidence(
            chain_id=chain_id,
            head_number=head,
            contract_has_code=has_code,
            root_on_chain=root,
            tx_found=receipt is not None,
            tx_status=None if receipt is None else int(receipt["status"]),
            tx_to=None
            if receipt is None or receipt.get("to") is None
            else to_checksum_address(receipt["to"]),
            tx_block_number=None if receipt is None else int(receipt["blockNumber"]),
            tx_block_hash=None if receipt is None else _hex(receipt["blockHash"]),
            events=() if receipt is None else tuple(self._decode_logs(receipt)),
            block_hash_at_height=block_hash,
            block_timestamp=timestamp,
        )


def wait_for_rpc(rpc_url: str, *, timeout: float = 30.0) -> int:
    """Poll ``rpc_url`` until it answers eth_chainId; returns the chain id."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return ChainClient(rpc_url, timeout=2.0).chain_id
        except ChainError as exc:
            last = exc
            time.sleep(0.1)
    raise ChainUnavailable(f"no chain answered at {rpc_url} within {timeout:g} s: {last}")
