// Tests for AnchorRegistry: roles, gap-free batch sequencing, events, on-chain
// Merkle verification against OpenZeppelin's StandardMerkleTree, interop with
// the proofs the Python side produces, the committed ABI/bytecode, and the
// anchoring gas budget.
const fs = require("node:fs");
const path = require("node:path");
const { expect } = require("chai");
const hre = require("hardhat");
const { ethers } = hre;
const { loadFixture } = require("@nomicfoundation/hardhat-network-helpers");
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");

// Written by the Python test suite; this file must read exactly this path.
const VECTORS_PATH = path.join(__dirname, "..", "..", "tests", "vectors", "merkle", "known-answers.json");

// Budget for one anchor() transaction (intrinsic + calldata + execution).
const ANCHOR_GAS_BUDGET = 60_000n;

const abi = ethers.AbiCoder.defaultAbiCoder();
const LEAF_ENCODING = ["bytes32"];

// Deterministic "random" record hashes: uniformly distributed like real
// SHA/keccak digests, but reproducible so a failure can be replayed exactly.
function recordHashes(label, count) {
  return Array.from({ length: count }, (_, i) => ethers.keccak256(abi.encode(["string", "uint256"], [label, i])));
}

function buildTree(hashes) {
  return StandardMerkleTree.of(
    hashes.map((h) => [h]),
    LEAF_ENCODING,
  );
}

// The leaf the contract documents, computed independently with ethers.
function expectedLeaf(recordHash) {
  return ethers.keccak256(ethers.keccak256(abi.encode(["bytes32"], [recordHash])));
}

// Copy of `proof` with one bit of one byte changed.
function flipByte(proof, elementIndex, byteIndex) {
  const copy = [...proof];
  const bytes = ethers.getBytes(copy[elementIndex]);
  bytes[byteIndex] ^= 0x01;
  copy[elementIndex] = ethers.hexlify(bytes);
  return copy;
}

// Deployer, admin and anchorer are three distinct accounts, so the tests
// prove the roles go to the constructor arguments, not to msg.sender.
async function deployFixture() {
  const [deployer, admin, anchorer, outsider, third] = await ethers.getSigners();
  const registry = await ethers.deployContract("AnchorRegistry", [admin.address, anchorer.address], deployer);
  await registry.waitForDeployment();
  return {
    registry,
    asAnchorer: registry.connect(anchorer),
    deployer,
    admin,
    anchorer,
    outsider,
    third,
    ANCHORER_ROLE: await registry.ANCHORER_ROLE(),
    DEFAULT_ADMIN_ROLE: await registry.DEFAULT_ADMIN_ROLE(),
  };
}

const ROOT_A = ethers.id("root A");
const ROOT_B = ethers.id("root B");
const ROOT_C = ethers.id("root C");

describe("AnchorRegistry", function () {
  describe("roles", function () {
    it("refuses the zero address as admin or anchorer", async function () {
      const [deployer, someone] = await ethers.getSigners();
      const factory = await ethers.getContractFactory("AnchorRegistry", deployer);
      await expect(factory.deploy(ethers.ZeroAddress, someone.address))
        .to.be.revertedWithCustomError(factory, "ZeroAddress");
      await expect(factory.deploy(someone.address, ethers.ZeroAddress))
        .to.be.revertedWithCustomError(factory, "ZeroAddress");
    });

    it("grants DEFAULT_ADMIN_ROLE only to admin and ANCHORER_ROLE only to anchorer", async function () {
      const { registry, deployer, admin, anchorer, outsider, ANCHORER_ROLE, DEFAULT_ADMIN_ROLE } =
        await loadFixture(deployFixture);

      expect(ANCHORER_ROLE).to.equal(ethers.id("ANCHORER_ROLE"));
      expect(DEFAULT_ADMIN_ROLE).to.equal(ethers.ZeroHash);
      // The admin manages the anchorer role (OpenZeppelin default).
      expect(await registry.getRoleAdmin(ANCHORER_ROLE)).to.equal(DEFAULT_ADMIN_ROLE);

      expect(await registry.hasRole(DEFAULT_ADMIN_ROLE, admin.address)).to.equal(true);
      expect(await registry.hasRole(ANCHORER_ROLE, admin.address)).to.equal(false);
      expect(await registry.hasRole(ANCHORER_ROLE, anchorer.address)).to.equal(true);
      expect(await registry.hasRole(DEFAULT_ADMIN_ROLE, anchorer.address)).to.equal(false);
      for (const account of [deployer, outsider]) {
        expect(await registry.hasRole(DEFAULT_ADMIN_ROLE, account.address)).to.equal(false);
        expect(await registry.hasRole(ANCHORER_ROLE, account.address)).to.equal(false);
      }
    });

    it("emits RoleGranted for both roles at deployment, sent by the deployer", async function () {
      const { registry, deployer, admin, anchorer, ANCHORER_ROLE, DEFAULT_ADMIN_ROLE } =
        await loadFixture(deployFixture);
      const deployTx = registry.deploymentTransaction();

      await expect(deployTx)
        .to.emit(registry, "RoleGranted")
        .withArgs(DEFAULT_ADMIN_ROLE, admin.address, deployer.address);
      await expect(deployTx)
        .to.emit(registry, "RoleGranted")
        .withArgs(ANCHORER_ROLE, anchorer.address, deployer.address);
    });

    it("rejects anchor() from any account without ANCHORER_ROLE, including the admin", async function () {
      const { registry, deployer, admin, outsider, ANCHORER_ROLE } = await loadFixture(deployFixture);

      for (const account of [outsider, admin, deployer]) {
        await expect(registry.connect(account).anchor(1, ROOT_A, 1))
          .to.be.revertedWithCustomError(registry, "AccessControlUnauthorizedAccount")
          .withArgs(account.address, ANCHORER_ROLE);
      }
      expect(await registry.nextBatchId()).to.equal(1n);
      expect(await registry.rootOf(1)).to.equal(ethers.ZeroHash);
    });

    it("checks the role before the batch id, root and leaf count", async function () {
      const { registry, outsider, ANCHORER_ROLE } = await loadFixture(deployFixture);

      // Every argument is invalid; the caller must still only learn it lacks the role.
      await expect(registry.connect(outsider).anchor(7, ethers.ZeroHash, 0))
        .to.be.revertedWithCustomError(registry, "AccessControlUnauthorizedAccount")
        .withArgs(outsider.address, ANCHORER_ROLE);
    });

    it("lets the admin grant ANCHORER_ROLE to a third account, which can then anchor", async function () {
      const { registry, admin, third, ANCHORER_ROLE } = await loadFixture(deployFixture);

      await expect(registry.connect(third).anchor(1, ROOT_A, 1))
        .to.be.revertedWithCustomError(registry, "AccessControlUnauthorizedAccount")
        .withArgs(third.address, ANCHORER_ROLE);

      await expect(registry.connect(admin).grantRole(ANCHORER_ROLE, third.address))
        .to.emit(registry, "RoleGranted")
        .withArgs(ANCHORER_ROLE, third.address, admin.address);
      expect(await registry.hasRole(ANCHORER_ROLE, third.address)).to.equal(true);

      await expect(registry.connect(third).anchor(1, ROOT_A, 1))
        .to.emit(registry, "BatchAnchored")
        .withArgs(1n, ROOT_A, 1n);
      expect(await registry.rootOf(1)).to.equal(ROOT_A);
    });

    it("revoking ANCHORER_ROLE stops that account from anchoring, and only that account", async function () {
      const { registry, asAnchorer, admin, anchorer, third, ANCHORER_ROLE } = await loadFixture(deployFixture);

      await registry.connect(admin).grantRole(ANCHORER_ROLE, third.address);
      await registry.connect(third).anchor(1, ROOT_A, 1);

      await expect(registry.connect(admin).revokeRole(ANCHORER_ROLE, third.address))
        .to.emit(registry, "RoleRevoked")
        .withArgs(ANCHORER_ROLE, third.address, admin.address);
      expect(await registry.hasRole(ANCHORER_ROLE, third.address)).to.equal(false);

      await expect(registry.connect(third).anchor(2, ROOT_B, 1))
        .to.be.revertedWithCustomError(registry, "AccessControlUnauthorizedAccount")
        .withArgs(third.address, ANCHORER_ROLE);

      // The original anchorer is unaffected and continues the sequence.
      await expect(asAnchorer.anchor(2, ROOT_B, 1)).to.emit(registry, "BatchAnchored").withArgs(2n, ROOT_B, 1n);

      // Revoking the original anchorer works the same way.
      await registry.connect(admin).revokeRole(ANCHORER_ROLE, anchorer.address);
      await expect(asAnchorer.anchor(3, ROOT_C, 1))
        .to.be.revertedWithCustomError(registry, "AccessControlUnauthorizedAccount")
        .withArgs(anchorer.address, ANCHORER_ROLE);
    });

    it("only the admin can grant or revoke ANCHORER_ROLE", async function () {
      const { registry, anchorer, outsider, third, ANCHORER_ROLE, DEFAULT_ADMIN_ROLE } =
        await loadFixture(deployFixture);

      // The anchorer must not be able to hand its key's power to another account.
      await expect(registry.connect(anchorer).grantRole(ANCHORER_ROLE, third.address))
        .to.be.revertedWithCustomError(registry, "AccessControlUnauthorizedAccount")
        .withArgs(anchorer.address, DEFAULT_ADMIN_ROLE);
      await expect(registry.connect(outsider).revokeRole(ANCHORER_ROLE, anchorer.address))
        .to.be.revertedWithCustomError(registry, "AccessControlUnauthorizedAccount")
        .withArgs(outsider.address, DEFAULT_ADMIN_ROLE);

      expect(await registry.hasRole(ANCHORER_ROLE, third.address)).to.equal(false);
      expect(await registry.hasRole(ANCHORER_ROLE, anchorer.address)).to.equal(true);
    });
  });

  describe("sequencing", function () {
    it("starts with nextBatchId 1 and nothing anchored", async function () {
      const { registry } = await loadFixture(deployFixture);

      expect(await registry.nextBatchId()).to.equal(1n);
      expect(await registry.rootOf(0)).to.equal(ethers.ZeroHash);
      expect(await registry.rootOf(1)).to.equal(ethers.ZeroHash);
    });

    it("anchors batch 1 then batch 2, advancing nextBatchId each time", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await asAnchorer.anchor(1, ROOT_A, 3);
      expect(await registry.nextBatchId()).to.equal(2n);
      await asAnchorer.anchor(2, ROOT_B, 5);
      expect(await registry.nextBatchId()).to.equal(3n);

      expect(await registry.rootOf(1)).to.equal(ROOT_A);
      expect(await registry.rootOf(2)).to.equal(ROOT_B);
    });

    it("rejects batch id 0", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await expect(asAnchorer.anchor(0, ROOT_A, 1))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(1n, 0n);
      expect(await registry.nextBatchId()).to.equal(1n);
      expect(await registry.rootOf(0)).to.equal(ethers.ZeroHash);
    });

    it("rejects skipping ahead (a gap in the sequence)", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      // Before anything is anchored...
      await expect(asAnchorer.anchor(2, ROOT_A, 1))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(1n, 2n);

      // ...and after batch 1: 3 would leave batch 2 missing.
      await asAnchorer.anchor(1, ROOT_A, 1);
      await expect(asAnchorer.anchor(3, ROOT_C, 1))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(2n, 3n);
      await expect(asAnchorer.anchor(ethers.MaxUint256, ROOT_C, 1))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(2n, ethers.MaxUint256);

      expect(await registry.nextBatchId()).to.equal(2n);
      expect(await registry.rootOf(3)).to.equal(ethers.ZeroHash);
    });

    it("rejects re-anchoring an id (replayed or duplicated tx) without changing the stored root", async function () {
      const { registry, asAnchorer, anchorer } = await loadFixture(deployFixture);

      const first = await asAnchorer.anchor(1, ROOT_A, 4);

      // The identical call again, as a retrying operator would send it.
      await expect(asAnchorer.anchor(1, ROOT_A, 4))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(2n, 1n);

      // The very same calldata re-sent as a new transaction.
      await expect(anchorer.sendTransaction({ to: await registry.getAddress(), data: first.data }))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(2n, 1n);

      // An attempt to overwrite batch 1 with a different root.
      await expect(asAnchorer.anchor(1, ROOT_B, 9))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(2n, 1n);

      expect(await registry.rootOf(1)).to.equal(ROOT_A);
      expect(await registry.nextBatchId()).to.equal(2n);

      // Replaying an older id once later batches exist is rejected too.
      await asAnchorer.anchor(2, ROOT_B, 1);
      await expect(asAnchorer.anchor(1, ROOT_A, 4))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(3n, 1n);
      expect(await registry.rootOf(1)).to.equal(ROOT_A);
      expect(await registry.rootOf(2)).to.equal(ROOT_B);
    });

    it("rejects a zero root", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await expect(asAnchorer.anchor(1, ethers.ZeroHash, 1)).to.be.revertedWithCustomError(registry, "ZeroRoot");
      expect(await registry.nextBatchId()).to.equal(1n);
    });

    it("rejects an empty batch (leafCount 0)", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await expect(asAnchorer.anchor(1, ROOT_A, 0)).to.be.revertedWithCustomError(registry, "EmptyBatch");
      expect(await registry.nextBatchId()).to.equal(1n);
      expect(await registry.rootOf(1)).to.equal(ethers.ZeroHash);
    });

    it("checks the batch id first, then the root, then the leaf count", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await expect(asAnchorer.anchor(2, ethers.ZeroHash, 0))
        .to.be.revertedWithCustomError(registry, "UnexpectedBatchId")
        .withArgs(1n, 2n);
      await expect(asAnchorer.anchor(1, ethers.ZeroHash, 0)).to.be.revertedWithCustomError(registry, "ZeroRoot");
    });

    it("does not consume a batch id when anchoring reverts", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await expect(asAnchorer.anchor(1, ethers.ZeroHash, 1)).to.be.reverted;
      await expect(asAnchorer.anchor(1, ROOT_A, 0)).to.be.reverted;
      await expect(asAnchorer.anchor(1, ROOT_A, 1)).to.emit(registry, "BatchAnchored").withArgs(1n, ROOT_A, 1n);
      expect(await registry.nextBatchId()).to.equal(2n);
    });
  });

  describe("events and roots", function () {
    it("emits exactly one BatchAnchored(batchId, root, leafCount) per anchor", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await expect(asAnchorer.anchor(1, ROOT_A, 42)).to.emit(registry, "BatchAnchored").withArgs(1n, ROOT_A, 42n);
      // leafCount is not bounded above; the largest value goes through unchanged.
      const tx = asAnchorer.anchor(2, ROOT_B, ethers.MaxUint256);
      await expect(tx).to.emit(registry, "BatchAnchored").withArgs(2n, ROOT_B, ethers.MaxUint256);

      const receipt = await (await tx).wait();
      expect(receipt.logs).to.have.lengthOf(1);
      // batchId and root are indexed, so indexers can filter on them.
      const [log] = receipt.logs;
      expect(log.topics).to.deep.equal([
        registry.interface.getEvent("BatchAnchored").topicHash,
        ethers.toBeHex(2n, 32),
        ROOT_B,
      ]);
    });

    it("rootOf returns the root anchored for each batch", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await asAnchorer.anchor(1, ROOT_A, 1);
      await asAnchorer.anchor(2, ROOT_B, 2);
      await asAnchorer.anchor(3, ROOT_C, 3);

      expect(await registry.rootOf(1)).to.equal(ROOT_A);
      expect(await registry.rootOf(2)).to.equal(ROOT_B);
      expect(await registry.rootOf(3)).to.equal(ROOT_C);
    });

    it("rootOf of an unknown batch id is zero bytes32", async function () {
      const { registry, asAnchorer } = await loadFixture(deployFixture);

      await asAnchorer.anchor(1, ROOT_A, 1);
      for (const id of [0n, 2n, 1000n, ethers.MaxUint256]) {
        expect(await registry.rootOf(id)).to.equal(ethers.ZeroHash);
      }
    });
  });

  describe("on-chain verification", function () {
    it("leafOf(h) equals keccak256(bytes.concat(keccak256(abi.encode(h)))) and the tree's leafHash", async function () {
      const { registry } = await loadFixture(deployFixture);
      const tree = buildTree([ROOT_A]); // any tree: leafHash does not depend on its contents

      const samples = [ethers.ZeroHash, ethers.toBeHex(ethers.MaxUint256, 32), ...recordHashes("leafOf", 8)];
      for (const h of samples) {
        const onChain = await registry.leafOf(h);
        expect(onChain, `leafOf(${h}) vs ethers`).to.equal(expectedLeaf(h));
        expect(onChain, `leafOf(${h}) vs StandardMerkleTree.leafHash`).to.equal(tree.leafHash([h]));
      }
    });

    for (const size of [1, 2, 3, 7, 100]) {
      describe(`tree of ${size} record hash${size === 1 ? "" : "es"}`, function () {
        // Batch 1 is the tree under test; batch 2 is an unrelated tree of the
        // same size, so "right proof, wrong batch" can be checked.
        async function anchoredTreeFixture() {
          const base = await deployFixture();
          const hashes = recordHashes(`tree-${size}`, size);
          const tree = buildTree(hashes);
          const otherTree = buildTree(recordHashes(`other-${size}`, size));
          await base.asAnchorer.anchor(1, tree.root, size);
          await base.asAnchorer.anchor(2, otherTree.root, size);
          // getProof(i) takes the index in insertion order, i.e. hashes[i].
          const proofs = hashes.map((_, i) => tree.getProof(i));
          return { ...base, hashes, tree, proofs };
        }

        it("verifies every leaf with its proof", async function () {
          const { registry, hashes, tree, proofs } = await loadFixture(anchoredTreeFixture);

          expect(await registry.rootOf(1)).to.equal(tree.root);
          for (const [i, h] of hashes.entries()) {
            if (size === 1) expect(proofs[i]).to.deep.equal([]); // a single leaf is the root
            expect(await registry.verify(1, h, proofs[i]), `leaf ${i}`).to.equal(true);
          }
        });

        it("rejects a hash that is not in the tree, whatever proof is given", async function () {
          const { registry, proofs } = await loadFixture(anchoredTreeFixture);
          const strangers = [ethers.ZeroHash, ...recordHashes(`stranger-${size}`, 3)];

          for (const stranger of strangers) {
            for (const [i, proof] of proofs.entries()) {
              expect(await registry.verify(1, stranger, proof), `${stranger} with proof ${i}`).to.equal(false);
            }
          }
        });

        if (size > 1) {
          it("rejects a proof with one byte flipped", async function () {
            const { registry, hashes, proofs } = await loadFixture(anchoredTreeFixture);

            for (const [i, h] of hashes.entries()) {
              // Vary the element and byte position across leaves.
              const tampered = flipByte(proofs[i], i % proofs[i].length, (i * 7) % 32);
              expect(await registry.verify(1, h, tampered), `leaf ${i}`).to.equal(false);
            }
          });

          it("rejects a truncated proof", async function () {
            const { registry, hashes, proofs } = await loadFixture(anchoredTreeFixture);

            for (const [i, h] of hashes.entries()) {
              expect(await registry.verify(1, h, proofs[i].slice(0, -1)), `leaf ${i} minus last`).to.equal(false);
              expect(await registry.verify(1, h, proofs[i].slice(1)), `leaf ${i} minus first`).to.equal(false);
            }
          });
        }

        it("rejects a proof with an extra element", async function () {
          const { registry, hashes, proofs } = await loadFixture(anchoredTreeFixture);
          const [extra] = recordHashes(`extra-${size}`, 1);

          for (const [i, h] of hashes.entries()) {
            expect(await registry.verify(1, h, [...proofs[i], extra]), `leaf ${i} + appended`).to.equal(false);
            expect(await registry.verify(1, h, [extra, ...proofs[i]]), `leaf ${i} + prepended`).to.equal(false);
          }
        });

        it("rejects a valid proof checked against another batch id", async function () {
          const { registry, hashes, proofs } = await loadFixture(anchoredTreeFixture);

          for (const [i, h] of hashes.entries()) {
            expect(await registry.verify(2, h, proofs[i]), `leaf ${i}`).to.equal(false);
          }
        });

        it("rejects any proof for an unknown batch id", async function () {
          const { registry, hashes, proofs } = await loadFixture(anchoredTreeFixture);

          for (const id of [0n, 3n, ethers.MaxUint256]) {
            for (const [i, h] of hashes.entries()) {
              expect(await registry.verify(id, h, proofs[i]), `batch ${id}, leaf ${i}`).to.equal(false);
            }
          }
        });
      });
    }
  });

  describe("known-answer vectors shared with the Python tests (tests/vectors/merkle/known-answers.json)", function () {
    // Read at definition time so each case becomes its own test. Any problem
    // with the file becomes one failing test rather than a skipped suite.
    const { cases, problem } = loadVectors();

    if (problem) {
      it("loads the known-answer vectors", function () {
        expect.fail(problem);
      });
      return;
    }

    for (const vector of cases) {
      const count = `${vector.hashes.length} hash${vector.hashes.length === 1 ? "" : "es"}`;
      it(`case "${vector.name}" (${count}): anchored root verifies every Python proof`, async function () {
        const { registry, asAnchorer } = await loadFixture(deployFixture);

        await asAnchorer.anchor(1, vector.root, vector.hashes.length);
        for (const [i, h] of vector.hashes.entries()) {
          expect(await registry.verify(1, h, vector.proofs[i]), `hashes[${i}] = ${h}`).to.equal(true);
        }
        // Same tree on both sides: the JS library must reach the Python root.
        expect(buildTree(vector.hashes).root, "StandardMerkleTree root vs Python root").to.equal(vector.root);
      });
    }
  });

  describe("committed artifact", function () {
    // hardhat.config.js promises that ledger/contracts/AnchorRegistry.json,
    // which Python deploys, never drifts from what this suite tests.
    it("ledger/contracts/AnchorRegistry.json has the ABI and bytecode of a fresh compile", async function () {
      const committedPath = path.join(__dirname, "..", "..", "ledger", "contracts", "AnchorRegistry.json");
      const committed = JSON.parse(fs.readFileSync(committedPath, "utf8"));
      const fresh = await hre.artifacts.readArtifact("AnchorRegistry");
      const hint = "stale; run npx hardhat export-artifact";

      expect(committed.abi, `ABI ${hint}`).to.deep.equal(fresh.abi);
      expect(committed.bytecode, `bytecode ${hint}`).to.equal(fresh.bytecode);
      expect(committed.deployedBytecode, `deployedBytecode ${hint}`).to.equal(fresh.deployedBytecode);
    });
  });

  describe("gas", function () {
    it(`anchoring a fresh batch after the first costs <= ${ANCHOR_GAS_BUDGET} gas`, async function () {
      const { asAnchorer } = await loadFixture(deployFixture);

      // Batch 1 pays the one-off cost of nextBatchId's first write; measure
      // the steady state from batch 2 on.
      await asAnchorer.anchor(1, ROOT_A, 100);

      const typical = await (await asAnchorer.anchor(2, ROOT_B, 250)).wait();
      // Worst case for calldata pricing: every argument byte non-zero.
      const allOnes = ethers.toBeHex(ethers.MaxUint256, 32);
      const worst = await (await asAnchorer.anchor(3, allOnes, ethers.MaxUint256)).wait();

      console.log(`      anchor() gasUsed: typical batch ${typical.gasUsed}, worst-case calldata ${worst.gasUsed}`);
      expect(typical.gasUsed).to.be.lte(ANCHOR_GAS_BUDGET);
      expect(worst.gasUsed).to.be.lte(ANCHOR_GAS_BUDGET);
    });
  });
});

// Loads and shape-checks the Python vectors. Returns { cases } or { problem }
// with a message saying what is wrong and where.
function loadVectors() {
  if (!fs.existsSync(VECTORS_PATH)) {
    return {
      problem:
        `Missing ${VECTORS_PATH}. The Python side must generate its Merkle known-answer vectors ` +
        `there ({"cases": [{"name", "hashes", "root", "proofs"}]}); this interop check cannot pass without them.`,
    };
  }
  let data;
  try {
    data = JSON.parse(fs.readFileSync(VECTORS_PATH, "utf8"));
  } catch (err) {
    return { problem: `Cannot parse ${VECTORS_PATH}: ${err.message}` };
  }

  const isBytes32 = (v) => typeof v === "string" && ethers.isHexString(v, 32);
  const cases = data && data.cases;
  if (!Array.isArray(cases) || cases.length === 0) {
    return { problem: `${VECTORS_PATH} must hold a non-empty "cases" array` };
  }
  for (const [n, c] of cases.entries()) {
    const where = `${VECTORS_PATH} cases[${n}]${c && c.name ? ` ("${c.name}")` : ""}`;
    if (!c || typeof c.name !== "string") return { problem: `${where}: "name" must be a string` };
    if (!Array.isArray(c.hashes) || c.hashes.length === 0 || !c.hashes.every(isBytes32)) {
      return { problem: `${where}: "hashes" must be a non-empty array of 0x-prefixed bytes32` };
    }
    if (!isBytes32(c.root)) return { problem: `${where}: "root" must be a 0x-prefixed bytes32` };
    if (
      !Array.isArray(c.proofs) ||
      c.proofs.length !== c.hashes.length ||
      !c.proofs.every((p) => Array.isArray(p) && p.every(isBytes32))
    ) {
      return { problem: `${where}: "proofs" must hold one array of bytes32 per hash` };
    }
  }
  // Compare hex case-insensitively: Python may not emit lowercase.
  const lower = (h) => h.toLowerCase();
  return {
    cases: cases.map((c) => ({
      name: c.name,
      hashes: c.hashes.map(lower),
      root: lower(c.root),
      proofs: c.proofs.map((p) => p.map(lower)),
    })),
  };
}
