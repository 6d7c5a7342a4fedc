// Reference oracle for the tests and the benchmark: reads
// {"cases": [{"hashes": ["0x…", …]}, …]} on stdin, builds each with the real
// @openzeppelin/merkle-tree StandardMerkleTree(["bytes32"]) and prints
// {"cases": [{"root", "proofs" (aligned with hashes), "dump"}, …]}.
// With --time it also reports build and proof milliseconds per case.
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");

const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const timed = process.argv.includes("--time");
  const withDump = !process.argv.includes("--no-dump");
  const out = input.cases.map(({ hashes }) => {
    const t0 = process.hrtime.bigint();
    const tree = StandardMerkleTree.of(hashes.map((h) => [h]), ["bytes32"]);
    const t1 = process.hrtime.bigint();
    const proofs = hashes.map((_, i) => tree.getProof(i));
    const t2 = process.hrtime.bigint();
    const result = { root: tree.root, proofs };
    if (withDump) result.dump = tree.dump();
    if (timed) {
      result.build_ms = Number(t1 - t0) / 1e6;
      result.proofs_ms = Number(t2 - t1) / 1e6;
    }
    return result;
  });
  process.stdout.write(JSON.stringify({ cases: out }));
});
