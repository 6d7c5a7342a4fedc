// The pages' verification module (app/web/static/verify.js) under Node, on the project's
// vectors: OpenZeppelin's known answers and probes (tests/vectors/merkle/), and receipts
// anchored on a real chain with their Python verdicts, valid and tampered (written by
// tests/web/test_verify_js.py, which runs this file: ANCLA_RECEIPT_CASES names them).
//
//   node --test tests/web/verify.test.mjs        # the vectors alone

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  MESSAGES,
  STEPS,
  foldProof,
  leafOf,
  parseReceipt,
  proofLengths,
  recordHash,
  verifyReceipt,
} from "../../app/web/static/verify.js";

const read = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8"));
const knownAnswers = read("../vectors/merkle/known-answers.json");
const probes = read("../vectors/merkle/probes.json");

function flipLastDigit(hex) {
  const last = hex.at(-1) === "0" ? "1" : "0";
  return hex.slice(0, -1) + last;
}

test("every proof of OpenZeppelin's trees folds to the tree's root", () => {
  for (const vector of knownAnswers.cases) {
    vector.hashes.forEach((hash, i) => {
      assert.equal(foldProof(leafOf(hash), vector.proofs[i]), vector.root, `${vector.name} #${i}`);
      assert.ok(proofLengths(vector.hashes.length).includes(vector.proofs[i].length), vector.name);
    });
  }
});

test("the leaf is the one in OpenZeppelin's dump", () => {
  for (const vector of knownAnswers.cases) {
    const { tree, values } = vector.dump;
    for (const { value, treeIndex } of values) assert.equal(leafOf(value[0]), tree[treeIndex]);
  }
});

test("a tampered hash, proof node or order of nodes no longer folds to the root", () => {
  for (const vector of knownAnswers.cases.filter((c) => c.hashes.length > 1)) {
    const [hash] = vector.hashes;
    const [proof] = vector.proofs;
    assert.notEqual(foldProof(leafOf(flipLastDigit(hash)), proof), vector.root);
    assert.notEqual(foldProof(leafOf(hash), [flipLastDigit(proof[0]), ...proof.slice(1)]), vector.root);
    assert.notEqual(foldProof(leafOf(hash), proof.slice(0, -1)), vector.root);
    if (proof.length > 1) assert.notEqual(foldProof(leafOf(hash), [...proof].reverse()), vector.root);
  }
});

test("the probes get StandardMerkleTree.verify's verdicts", () => {
  for (const probe of probes.probes) {
    let verdict;
    try {
      verdict = foldProof(leafOf(probe.hash), probe.proof) === probes.root;
    } catch {
      verdict = false;
    }
    assert.equal(verdict, probe.valid, probe.name);
  }
});

test("records hash as ledger.record_hash does: keccak256 of RFC 8785", () => {
  // Members sorted by UTF-16 code units, no whitespace, strings escaped minimally.
  const record = { schema: "ancla/x/1", "é": "ü", b: ["1250.00", 7, null, true], a: { z: 1, y: "\u2028" } };
  const reordered = { a: { y: "\u2028", z: 1 }, b: ["1250.00", 7, null, true], "é": "ü", schema: "ancla/x/1" };
  assert.equal(recordHash(record), recordHash(reordered));
  assert.notEqual(recordHash(record), recordHash({ ...record, b: ["1250.0", 7, null, true] }));
});

test("the steps are the CLI's, and every sentence has a key", () => {
  assert.deepEqual(STEPS.slice(0, 3), ["record", "leaf", "proof"]);
  assert.equal(STEPS.length, 10);
  assert.ok(Object.values(MESSAGES).every((text) => typeof text === "string" && text.length > 0));
});

test("a receipt is read strictly", () => {
  assert.throws(() => parseReceipt("{"), /not JSON/);
  assert.throws(() => parseReceipt({ receipt_version: 2 }), /receipt_version/);
  const pending = { receipt_version: 1, hash: `0x${"ab".repeat(32)}`, status: "pending", merkle: null, batch: null, anchor: null };
  assert.equal(parseReceipt(pending).status, "pending");
  assert.throws(() => parseReceipt({ ...pending, extra: 1 }), /unknown members: extra/);
  assert.throws(() => parseReceipt({ ...pending, hash: "0xAB" }), /hash must be/);
});

const casesFile = process.env.ANCLA_RECEIPT_CASES;

test(
  "anchored receipts, valid and tampered: the same steps, verdicts and evidence as ledger.verify_receipt",
  { skip: casesFile ? false : "ANCLA_RECEIPT_CASES is not set (tests/web/test_verify_js.py sets it)" },
  async () => {
    const { rpc_url: rpcUrl, cases } = JSON.parse(readFileSync(casesFile, "utf8"));
    assert.ok(cases.length >= 10);
    for (const item of cases) {
      const report = await verifyReceipt({
        receipt: item.receipt,
        record: item.record,
        recordText: item.record_text,
        rpcUrl,
        confirmations: item.confirmations,
      });
      const expected = item.python;
      assert.equal(report.outcome, expected.valid ? "pass" : "fail", item.name);
      assert.equal(report.failed_step, expected.failed_step, item.name);
      const steps = report.steps.map(({ step, ok, detail, expected: e, actual }) => ({
        step,
        ok,
        detail,
        expected: e,
        actual,
      }));
      assert.deepEqual(steps, expected.steps, item.name);
    }
  },
);
