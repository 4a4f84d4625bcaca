#!/usr/bin/env node
// Compile the payment contract with solc-js (offline) into committed JSON artifacts.
//
//   node build.js           write build/<Contract>.json
//   node build.js --check   exit 1 if the committed artifacts differ from a fresh compile
//   node build.js --print   print the fresh artifacts as one JSON object (used by the tests)
//
// The compiler version comes from package-lock.json (npm ci); the EVM version is explicit so
// that the same bytecode runs on the local chains (ganache, eth-tester) and on mainnet.
"use strict";

const fs = require("fs");
const path = require("path");

const ROOT = __dirname;
const BUILD_DIR = path.join(ROOT, "build");
// Paris: no PUSH0 (Shanghai) or MCOPY (Cancun), so every chain we target can run it.
const EVM_VERSION = "paris";
const OPTIMIZER = { enabled: true, runs: 200 };
// Source unit name -> contracts to write as artifacts.
const SOURCES = {
  "src/AcmePayments.sol": ["AcmePayments"],
  "src/test/BatchPayer.sol": ["BatchPayer"],
};

function loadSolc() {
  try {
    return require("solc");
  } catch (err) {
    console.error("solc is not installed: run `npm ci` in contracts/ first.");
    process.exit(2);
  }
}

function compile() {
  const solc = loadSolc();
  const input = {
    language: "Solidity",
    sources: Object.fromEntries(Object.keys(SOURCES).map((name) => [
      name, { content: fs.readFileSync(path.join(ROOT, name), "utf8") },
    ])),
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: OPTIMIZER,
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) console.error(e.formattedMessage);
  if (errors.length) process.exit(1);

  const artifacts = {};
  for (const [sourceName, contracts] of Object.entries(SOURCES)) {
    for (const contractName of contracts) {
      const c = output.contracts[sourceName][contractName];
      artifacts[contractName] = {
        contractName,
        sourceName,
        compiler: { name: "solc-js", version: solc.version() },
        settings: { evmVersion: EVM_VERSION, optimizer: OPTIMIZER },
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      };
    }
  }
  return artifacts;
}

function serialise(artifact) {
  return JSON.stringify(artifact, null, 2) + "\n";
}

function main() {
  const mode = process.argv[2] || "";
  const artifacts = compile();
  if (mode === "--print") {
    process.stdout.write(JSON.stringify(artifacts));
    return;
  }
  if (mode === "--check") {
    let stale = false;
    for (const [name, artifact] of Object.entries(artifacts)) {
      const file = path.join(BUILD_DIR, `${name}.json`);
      const committed = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
      if (committed !== serialise(artifact)) {
        console.error(`${path.relative(ROOT, file)} does not match a fresh compile: run \`npm run build\`.`);
        stale = true;
      }
    }
    process.exit(stale ? 1 : 0);
  }
  fs.mkdirSync(BUILD_DIR, { recursive: true });
  for (const [name, artifact] of Object.entries(artifacts)) {
    fs.writeFileSync(path.join(BUILD_DIR, `${name}.json`), serialise(artifact));
    console.log(`wrote build/${name}.json (${(artifact.deployedBytecode.length - 2) / 2} bytes deployed)`);
  }
}

main();
