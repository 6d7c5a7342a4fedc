// Hardhat 2 project for AnchorRegistry.
//
// Compilation must work offline: Hardhat normally downloads a native solc,
// which this project's machines cannot reach. We override the subtask that
// picks the compiler so it returns solc-js from the pinned `solc` npm package.
const path = require("path");
const { subtask } = require("hardhat/config");
const {
  TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD,
} = require("hardhat/builtin-tasks/task-names");

require("@nomicfoundation/hardhat-ethers");
require("@nomicfoundation/hardhat-chai-matchers");

const SOLC_VERSION = require("solc/package.json").version;

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args, hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) {
    throw new Error(
      `only solc ${SOLC_VERSION} (the pinned solc-js) is available offline, ` +
        `config asked for ${args.solcVersion}`,
    );
  }
  const solcjs = require("solc");
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: args.solcVersion,
    longVersion: solcjs.version(),
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 10000 },
      // "paris" avoids PUSH0 and later opcodes, so the same bytecode deploys
      // on Besu-based permissioned networks (LACChain) that lag mainnet forks.
      evmVersion: "paris",
    },
  },
  paths: {
    sources: "./contracts",
    tests: "./contracts/test",
    // Overridable so a test can compile from scratch without a stale cache.
    cache: path.join(process.env.ANCLA_HARDHAT_BUILD_DIR || "./var/hardhat", "cache"),
    artifacts: path.join(process.env.ANCLA_HARDHAT_BUILD_DIR || "./var/hardhat", "artifacts"),
  },
  networks: {
    hardhat: {
      // Tests start a second node on another chain id to exercise the refusal of
      // Hardhat's public keys outside the local chain.
      chainId: Number(process.env.ANCLA_HARDHAT_CHAIN_ID || 31337),
    },
  },
};

// The ABI and bytecode Python deploys and talks to are committed under
// ledger/contracts/ so an auditor needs no Node toolchain. `npx hardhat
// export-artifact` refreshes that file from a fresh compile; the test suite
// checks the two never drift apart.
const { task } = require("hardhat/config");
const fs = require("fs");

const COMMITTED_ARTIFACT = path.join(__dirname, "ledger", "contracts", "AnchorRegistry.json");

task("export-artifact", "Write the AnchorRegistry ABI and bytecode for Python")
  .addFlag("check", "Only compare with the committed file; exit 1 if it differs")
  .setAction(async ({ check }, hre) => {
    await hre.run("compile", { quiet: true });
    const artifact = await hre.artifacts.readArtifact("AnchorRegistry");
    const exported = {
      contractName: artifact.contractName,
      sourceName: artifact.sourceName,
      compiler: { solc: SOLC_VERSION, settings: hre.config.solidity.compilers[0].settings },
      abi: artifact.abi,
      bytecode: artifact.bytecode,
      deployedBytecode: artifact.deployedBytecode,
    };
    const text = JSON.stringify(exported, null, 2) + "\n";
    if (check) {
      const committed = fs.existsSync(COMMITTED_ARTIFACT) ? fs.readFileSync(COMMITTED_ARTIFACT, "utf8") : "";
      if (committed !== text) {
        console.error(`${COMMITTED_ARTIFACT} differs from a fresh compile; run npx hardhat export-artifact`);
        process.exitCode = 1;
        return;
      }
      console.log("committed artifact matches a fresh compile");
      return;
    }
    fs.mkdirSync(path.dirname(COMMITTED_ARTIFACT), { recursive: true });
    fs.writeFileSync(COMMITTED_ARTIFACT, text);
    console.log(`wrote ${COMMITTED_ARTIFACT}`);
  });
