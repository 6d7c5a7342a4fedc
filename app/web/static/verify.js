// Ancla: a receipt verified in the visitor's browser, with the steps of DESIGN §2.
//
// The same steps, in the same order, with the same expected/actual values and
// wording as ledger/verify.py (the CLI's `ancla verify-receipt`): the record's
// bytes hashed again (RFC 8785 + keccak256), the leaf recomputed, the proof
// folded, and the chain asked directly over JSON-RPC for the contract's code,
// rootOf(batch), the transaction's receipt and event, the block and the head.
// Nothing the service says is believed: it only serves the bytes, the receipt
// and this file. This module does no DOM work, so the same file runs under
// `node --test` (tests/web/verify.test.mjs) on the project's vectors.
//
// Vendored: ethers 6.17.0 (MIT) and canonicalize 4.0.0 (Apache-2.0), see
// vendor/README.md.

import { concat, getAddress, getBytes, id, keccak256, sha256, toUtf8Bytes } from "./vendor/ethers-6.17.0.min.js";
import canonicalize from "./vendor/canonicalize-4.0.0.js";

// The CLI's step names (DESIGN §9), in the order they run. "anchor" alone is the
// step a pending receipt fails at, as in the CLI.
export const STEPS = [
  "record",
  "leaf",
  "proof",
  "anchor.chain",
  "anchor.contract",
  "anchor.block",
  "anchor.transaction",
  "anchor.event",
  "anchor.root",
  "anchor.confirmations",
];

// Every sentence a step can say, in English with {placeholders}; the pages show
// them in the visitor's language from the service's one catalogue
// (app/web/verify_messages.py holds the same keys and msgids).
export const MESSAGES = {
  "record.pass": "keccak256(JCS(record)) equals the receipt's hash",
  "record.fail": "the record does not hash to the receipt's hash (it is another record, or was changed)",
  "record.unreadable": "the record is not JSON that can be hashed: {error}",
  pending:
    "the receipt is pending: the record is accepted but not yet anchored; fetch the receipt again later",
  "leaf.pass": "leaf recomputed from the hash",
  "leaf.fail": "keccak256(keccak256(hash)) is not the receipt's leaf",
  "proof.length": "a proof in a batch of {size} has {lengths} elements",
  "proof.fail": "folding the proof over the leaf does not give the receipt's root",
  "proof.pass": "{count}-step proof leads to the root",
  "chain.fail": "the RPC endpoint serves another chain than the receipt names",
  "chain.pass": "the RPC endpoint serves the receipt's chain",
  "contract.fail": "there is no contract at the receipt's address on this chain",
  "contract.pass": "a contract exists at the receipt's address",
  "block.fail":
    "block {number} on the chain is not the receipt's block: the anchor was reorged away or the receipt is wrong",
  "block.timestamp": "the block's timestamp is not the receipt's timestamp",
  "block.pass": "block {number} is canonical, timestamp matches",
  "transaction.missing": "the anchoring transaction is not on this chain",
  "transaction.reverted": "the anchoring transaction reverted",
  "transaction.to": "the anchoring transaction was sent to another address than the receipt's contract",
  "transaction.block": "the anchoring transaction is in another block than the receipt says",
  "transaction.pass": "the transaction succeeded in the receipt's block",
  "event.fail":
    "log {log_index} of the transaction is not BatchAnchored(batch {batch}, root, {size} leaves) from the receipt's contract",
  "event.pass": "the transaction emitted BatchAnchored for this batch and root",
  "root.fail": "the contract's root for batch {batch} is not the receipt's root",
  "root.pass": "rootOf({batch}) on chain equals the receipt's root",
  "confirmations.fail": "the anchor has {depth} confirmations, fewer than the {asked} asked for",
  "confirmations.pass": "{depth} confirmations (asked for {asked})",
  "trust.local": "nothing but this browser: computed here from the bytes",
  "trust.receipt": "nothing but this browser: computed here from the receipt",
  "trust.rpc": "the chain, as the JSON-RPC endpoint {rpc} answers",
  "error.receipt": "this is not a receipt Ancla can check: {error}",
  "error.chain": "could not ask the chain at {rpc}: {error}",
};

// What each step trusted, by step.
const TRUSTED = {
  record: "trust.local",
  leaf: "trust.receipt",
  proof: "trust.receipt",
  anchor: "trust.receipt",
};

/** A message's text: MESSAGES[key] (or a translation of it) with its {placeholders} filled. */
export function formatMessage(key, params = {}, catalogue = MESSAGES) {
  const template = catalogue[key] ?? MESSAGES[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.hasOwn(params, name) ? String(params[name]) : whole,
  );
}

/** A step that did not pass: named, with expected vs. actual, like ledger.errors.VerificationError. */
export class StepFailure extends Error {
  constructor(step, key, params, expected, actual) {
    super(`${step}: ${formatMessage(key, params)}`);
    this.step = step;
    this.key = key;
    this.params = params;
    this.expected = expected;
    this.actual = actual;
  }
}

/** The receipt or the chain could not be read: "could not check", not "invalid". */
export class CheckError extends Error {
  constructor(key, params) {
    super(formatMessage(key, params));
    this.key = key;
    this.params = params;
  }
}

const HEX32 = /^0x[0-9a-f]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const ROOT_OF = id("rootOf(uint256)").slice(0, 10);
const ANCHORED_TOPIC = id("BatchAnchored(uint256,bytes32,uint256)");
const MAX_UINT64 = 2n ** 64n - 1n;

function step(name, key, params, expected, actual, trustedParams = {}) {
  const trusted = TRUSTED[name] ?? "trust.rpc";
  return {
    step: name,
    ok: true,
    key,
    params,
    detail: formatMessage(key, params),
    expected,
    actual,
    trusted,
    trusted_params: trustedParams,
  };
}

// -- the protocol's hashes ---------------------------------------------------------

/** keccak256(RFC 8785 JSON of the record), 0x + 64 lowercase hex: the record's hash. */
export function recordHash(record) {
  return keccak256(toUtf8Bytes(canonicalize(record)));
}

/** OpenZeppelin StandardMerkleTree's leaf for ["bytes32"]: keccak256(keccak256(abi.encode(hash))). */
export function leafOf(hash) {
  // abi.encode of one bytes32 is those 32 bytes.
  return keccak256(keccak256(getBytes(hash)));
}

/** An internal node: keccak256 of the two children sorted ascending. */
export function hashPair(a, b) {
  const [low, high] = a <= b ? [a, b] : [b, a];
  return keccak256(concat([low, high]));
}

/** The root that folding ``proof`` over ``leaf`` gives (MerkleProof.processProof). */
export function foldProof(leaf, proof) {
  return proof.reduce((node, sibling) => hashPair(node, sibling.toLowerCase()), leaf.toLowerCase());
}

function bitLength(n) {
  return n > 0 ? n.toString(2).length : 0;
}

/** The proof lengths a leaf can have in a complete tree of ``size`` leaves (ledger.verify). */
export function proofLengths(size) {
  const deepest = bitLength(2 * size - 1) - 1;
  const shallowest = bitLength(size) - 1;
  return [...new Set([shallowest, deepest])].sort((x, y) => x - y);
}

// -- the receipt, read strictly (it is untrusted input) ----------------------------

function fail(error) {
  throw new CheckError("error.receipt", { error });
}

function object(value, name, members) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) fail(`${name} must be an object`);
  const unknown = Object.keys(value).filter((key) => !members.includes(key));
  if (unknown.length > 0) fail(`${name} has unknown members: ${unknown.join(", ")}`);
  return value;
}

function hash32(value, name) {
  if (typeof value !== "string" || !HEX32.test(value)) fail(`${name} must be 0x followed by 64 lowercase hex digits`);
  return value;
}

function integer(value, name, min = 0) {
  if (!Number.isSafeInteger(value) || value < min || BigInt(value) > MAX_UINT64) {
    fail(`${name} must be a whole number of at least ${min}`);
  }
  return value;
}

function address(value, name) {
  if (typeof value !== "string" || !ADDRESS.test(value)) fail(`${name} must be 0x followed by 40 hex digits`);
  try {
    return getAddress(value);
  } catch {
    return fail(`${name} is a mixed-case address with a wrong EIP-55 checksum`);
  }
}

/** A receipt_version 1 (DESIGN §2), checked member by member; throws CheckError. */
export function parseReceipt(input) {
  let data = input;
  if (typeof input === "string") {
    try {
      data = JSON.parse(input);
    } catch (error) {
      fail(`not JSON (${error.message})`);
    }
  }
  object(data, "the receipt", ["receipt_version", "hash", "status", "merkle", "batch", "anchor"]);
  if (data.receipt_version !== 1) fail("receipt_version must be 1");
  const receipt = { receipt_version: 1, hash: hash32(data.hash, "hash"), status: data.status };
  if (!["pending", "anchored", "final"].includes(data.status)) fail("status must be pending, anchored or final");
  if (data.status === "pending") {
    for (const part of ["merkle", "batch", "anchor"]) {
      if (data[part] != null) fail(`a pending receipt has no ${part}`);
    }
    return { ...receipt, merkle: null, batch: null, anchor: null };
  }
  const merkle = object(data.merkle, "merkle", ["format", "leaf_encoding", "leaf", "proof", "root"]);
  if (merkle.format !== undefined && merkle.format !== "openzeppelin-standard-v1") {
    fail("merkle.format must be openzeppelin-standard-v1");
  }
  if (merkle.leaf_encoding !== undefined && JSON.stringify(merkle.leaf_encoding) !== '["bytes32"]') {
    fail('merkle.leaf_encoding must be ["bytes32"]');
  }
  if (!Array.isArray(merkle.proof) || merkle.proof.length > 64) fail("merkle.proof must be a list of at most 64 digests");
  const batch = object(data.batch, "batch", ["id", "size"]);
  const anchor = object(data.anchor, "anchor", [
    "chain_id",
    "contract",
    "tx_hash",
    "block_number",
    "block_hash",
    "log_index",
    "timestamp",
  ]);
  return {
    ...receipt,
    merkle: {
      leaf: hash32(merkle.leaf, "merkle.leaf"),
      proof: merkle.proof.map((node, i) => hash32(node, `merkle.proof[${i}]`)),
      root: hash32(merkle.root, "merkle.root"),
    },
    batch: { id: integer(batch.id, "batch.id", 1), size: integer(batch.size, "batch.size", 1) },
    anchor: {
      chain_id: integer(anchor.chain_id, "anchor.chain_id", 1),
      contract: address(anchor.contract, "anchor.contract"),
      tx_hash: hash32(anchor.tx_hash, "anchor.tx_hash"),
      block_number: integer(anchor.block_number, "anchor.block_number"),
      block_hash: hash32(anchor.block_hash, "anchor.block_hash"),
      log_index: integer(anchor.log_index, "anchor.log_index"),
      timestamp: integer(anchor.timestamp, "anchor.timestamp"),
    },
  };
}

// -- steps 1 to 3: pure ---------------------------------------------------------

/** Step 1: keccak256(JCS(record)) == receipt.hash. */
export function checkRecord(receipt, record) {
  let actual;
  try {
    actual = recordHash(record);
  } catch (error) {
    throw new StepFailure("record", "record.unreadable", { error: error.message }, receipt.hash, null);
  }
  if (actual !== receipt.hash) {
    throw new StepFailure("record", "record.fail", {}, receipt.hash, actual);
  }
  return step("record", "record.pass", {}, receipt.hash, actual);
}

function anchored(receipt) {
  if (receipt.merkle === null || receipt.batch === null || receipt.anchor === null) {
    throw new StepFailure("anchor", "pending", {}, "anchored or final", receipt.status);
  }
  return receipt;
}

/** Step 2: the leaf recomputed from the hash equals merkle.leaf. */
export function checkLeaf(receipt) {
  const { merkle } = anchored(receipt);
  const actual = leafOf(receipt.hash);
  if (actual !== merkle.leaf) throw new StepFailure("leaf", "leaf.fail", {}, merkle.leaf, actual);
  return step("leaf", "leaf.pass", {}, merkle.leaf, actual);
}

/** Step 3: folding the proof over the leaf gives merkle.root. */
export function checkProof(receipt) {
  const { merkle, batch } = anchored(receipt);
  const lengths = proofLengths(batch.size);
  if (!lengths.includes(merkle.proof.length)) {
    throw new StepFailure(
      "proof",
      "proof.length",
      { size: batch.size, lengths: lengths.join(" or ") },
      lengths,
      merkle.proof.length,
    );
  }
  const actual = foldProof(merkle.leaf, merkle.proof);
  if (actual !== merkle.root) throw new StepFailure("proof", "proof.fail", {}, merkle.root, actual);
  return step("proof", "proof.pass", { count: merkle.proof.length }, merkle.root, actual);
}

// -- step 4: the chain, asked directly -----------------------------------------------

function quantity(value) {
  return "0x" + BigInt(value).toString(16);
}

function toNumber(hex) {
  return Number(BigInt(hex));
}

/** A JSON-RPC client of ``rpcUrl`` over ``fetch`` (one call per request: any endpoint takes it). */
export function jsonRpc(rpcUrl, fetchImpl = globalThis.fetch) {
  let next = 0;
  return async function call(method, params) {
    let response;
    try {
      response = await fetchImpl(rpcUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: ++next, method, params }),
      });
    } catch (error) {
      throw new CheckError("error.chain", { rpc: rpcUrl, error: `${method}: ${error.message}` });
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new CheckError("error.chain", { rpc: rpcUrl, error: `${method}: HTTP ${response.status}, not JSON` });
    }
    if (body === null || typeof body !== "object" || body.error) {
      const reason = body?.error?.message ?? `HTTP ${response.status}`;
      throw new CheckError("error.chain", { rpc: rpcUrl, error: `${method}: ${reason}` });
    }
    return body.result;
  };
}

function decodeAnchorLogs(logs) {
  const events = [];
  for (const log of logs ?? []) {
    const topics = log.topics ?? [];
    if (topics.length !== 3 || topics[0].toLowerCase() !== ANCHORED_TOPIC) continue;
    const data = (log.data ?? "").toLowerCase();
    if (!/^0x[0-9a-f]{64}$/.test(data)) continue;
    events.push({
      contract: getAddress(log.address),
      batch_id: BigInt(topics[1]).toString(),
      root: topics[2].toLowerCase(),
      leaf_count: BigInt(data).toString(),
      log_index: toNumber(log.logIndex),
    });
  }
  return events;
}

/** What the chain says about the receipt's anchor (ledger.chain.Registry.evidence). */
export async function fetchEvidence(receipt, rpcUrl, fetchImpl = globalThis.fetch) {
  const { batch, anchor } = anchored(receipt);
  const call = jsonRpc(rpcUrl, fetchImpl);
  const chainId = toNumber(await call("eth_chainId", []));
  const head = toNumber(await call("eth_blockNumber", []));
  const code = await call("eth_getCode", [anchor.contract, "latest"]);
  const hasCode = typeof code === "string" && code.length > 2;
  let root = null;
  if (hasCode) {
    const data = ROOT_OF + BigInt(batch.id).toString(16).padStart(64, "0");
    const answer = await call("eth_call", [{ to: anchor.contract, data }, "latest"]);
    root = typeof answer === "string" && /^0x[0-9a-fA-F]{64}$/.test(answer) ? answer.toLowerCase() : null;
  }
  const tx = await call("eth_getTransactionReceipt", [anchor.tx_hash]);
  const block = await call("eth_getBlockByNumber", [quantity(anchor.block_number), false]);
  return {
    chain_id: chainId,
    head_number: head,
    contract_has_code: hasCode,
    root_on_chain: root,
    tx_found: tx != null,
    tx_status: tx == null ? null : toNumber(tx.status),
    tx_to: tx == null || tx.to == null ? null : getAddress(tx.to),
    tx_block_hash: tx == null ? null : tx.blockHash.toLowerCase(),
    events: tx == null ? [] : decodeAnchorLogs(tx.logs),
    block_hash_at_height: block == null ? null : block.hash.toLowerCase(),
    block_timestamp: block == null ? null : toNumber(block.timestamp),
  };
}

function eventText([contract, batchId, root, leafCount]) {
  return `${contract} BatchAnchored(${batchId}, ${root}, ${leafCount})`;
}

/** Step 4: judge what the chain says against the receipt's claim, in ledger.verify's order. */
export function checkAnchor(receipt, evidence, confirmations = 1, rpcUrl = "") {
  const { merkle, batch, anchor } = anchored(receipt);
  const results = [];
  const rpc = { rpc: rpcUrl };
  const passed = (name, key, params, expected, actual) =>
    results.push(step(name, key, params, expected, actual, rpc));

  if (evidence.chain_id !== anchor.chain_id) {
    throw new StepFailure("anchor.chain", "chain.fail", {}, anchor.chain_id, evidence.chain_id);
  }
  passed("anchor.chain", "chain.pass", {}, anchor.chain_id, evidence.chain_id);

  if (!evidence.contract_has_code) {
    throw new StepFailure("anchor.contract", "contract.fail", {}, "contract code", "no code");
  }
  passed("anchor.contract", "contract.pass", {}, anchor.contract, anchor.contract);

  const number = { number: anchor.block_number };
  if (evidence.block_hash_at_height === null || evidence.block_hash_at_height !== anchor.block_hash) {
    throw new StepFailure("anchor.block", "block.fail", number, anchor.block_hash, evidence.block_hash_at_height);
  }
  if (evidence.block_timestamp !== anchor.timestamp) {
    throw new StepFailure("anchor.block", "block.timestamp", {}, anchor.timestamp, evidence.block_timestamp);
  }
  passed("anchor.block", "block.pass", number, anchor.block_hash, evidence.block_hash_at_height);

  if (!evidence.tx_found) {
    throw new StepFailure("anchor.transaction", "transaction.missing", {}, anchor.tx_hash, null);
  }
  if (evidence.tx_status !== 1) {
    throw new StepFailure("anchor.transaction", "transaction.reverted", {}, "status 1", `status ${evidence.tx_status}`);
  }
  if (evidence.tx_to !== anchor.contract) {
    throw new StepFailure("anchor.transaction", "transaction.to", {}, anchor.contract, evidence.tx_to);
  }
  if (evidence.tx_block_hash === null || evidence.tx_block_hash !== anchor.block_hash) {
    throw new StepFailure("anchor.transaction", "transaction.block", {}, anchor.block_hash, evidence.tx_block_hash);
  }
  passed("anchor.transaction", "transaction.pass", {}, anchor.tx_hash, anchor.tx_hash);

  const event = evidence.events.find((e) => e.log_index === anchor.log_index);
  const claimed = [anchor.contract, String(batch.id), merkle.root, String(batch.size)];
  const found = event ? [event.contract, event.batch_id, event.root, event.leaf_count] : null;
  if (found === null || found.some((value, i) => value !== claimed[i])) {
    throw new StepFailure(
      "anchor.event",
      "event.fail",
      { log_index: anchor.log_index, batch: batch.id, size: batch.size },
      eventText(claimed),
      found === null ? null : eventText(found),
    );
  }
  passed("anchor.event", "event.pass", {}, eventText(claimed), eventText(found));

  const ids = { batch: batch.id };
  if (evidence.root_on_chain === null || evidence.root_on_chain !== merkle.root) {
    throw new StepFailure("anchor.root", "root.fail", ids, merkle.root, evidence.root_on_chain);
  }
  passed("anchor.root", "root.pass", ids, merkle.root, evidence.root_on_chain);

  const depth = evidence.head_number - anchor.block_number + 1;
  const depthParams = { depth, asked: confirmations };
  if (depth < confirmations) {
    throw new StepFailure("anchor.confirmations", "confirmations.fail", depthParams, `>= ${confirmations}`, depth);
  }
  passed("anchor.confirmations", "confirmations.pass", depthParams, `>= ${confirmations}`, depth);
  return results;
}

// -- the whole verification -------------------------------------------------------

/**
 * Verify ``receipt`` (an object or its JSON) and, if given, its record (``record``:
 * the parsed object, or ``recordText``: the bytes as served) against the chain at
 * ``rpcUrl``. Never throws for an invalid receipt: returns the report
 * ``{hash, valid, failed_step, steps, outcome, error}``; ``outcome`` is "pass",
 * "fail" (a step failed: ``steps`` ends with it) or "error" (could not check:
 * the receipt is unreadable or the chain did not answer).
 * ``onStep(result)`` is called as each step is decided.
 */
export async function verifyReceipt({
  receipt,
  record,
  recordText,
  rpcUrl,
  confirmations = 1,
  fetch: fetchImpl = globalThis.fetch,
  onStep = () => {},
}) {
  const steps = [];
  const add = (result) => {
    steps.push(result);
    onStep(result);
  };
  let parsed = null;
  try {
    parsed = parseReceipt(receipt);
    if (recordText != null) {
      try {
        record = JSON.parse(recordText);
      } catch (error) {
        throw new StepFailure("record", "record.unreadable", { error: error.message }, parsed.hash, null);
      }
    }
    if (record != null) add(checkRecord(parsed, record));
    add(checkLeaf(parsed));
    add(checkProof(parsed));
    const evidence = await fetchEvidence(parsed, rpcUrl, fetchImpl);
    for (const result of checkAnchor(parsed, evidence, confirmations, rpcUrl)) add(result);
  } catch (error) {
    if (error instanceof StepFailure) {
      const params = error.step.startsWith("anchor.") ? { rpc: rpcUrl } : {};
      add({
        step: error.step,
        ok: false,
        key: error.key,
        params: error.params,
        detail: formatMessage(error.key, error.params),
        expected: error.expected,
        actual: error.actual,
        trusted: TRUSTED[error.step] ?? "trust.rpc",
        trusted_params: params,
      });
      return { hash: parsed?.hash ?? null, valid: false, failed_step: error.step, steps, outcome: "fail", error: null };
    }
    if (error instanceof CheckError) {
      return {
        hash: parsed?.hash ?? null,
        valid: false,
        failed_step: null,
        steps,
        outcome: "error",
        error: { key: error.key, params: error.params, detail: error.message },
      };
    }
    throw error;
  }
  return { hash: parsed.hash, valid: true, failed_step: null, steps, outcome: "pass", error: null };
}

/** The SHA-256 of a file's bytes as 64 lowercase hex digits (WebCrypto), as DESIGN §2 defines a document's digest. */
export async function sha256Hex(bytes) {
  if (!globalThis.crypto?.subtle) {
    // WebCrypto exists only in secure contexts (https, or this machine): the same
    // SHA-256 from the vendored library on a plain-http address.
    return sha256(new Uint8Array(bytes)).slice(2);
  }
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
