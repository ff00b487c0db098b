#!/usr/bin/env node
// Validate a glTF 2.0 asset (.glb or .gltf) with the Khronos glTF validator and print its JSON report.
//
// Usage: node tools/validate_gltf.mjs [PATH | -]      (no PATH or "-": read the asset from stdin)
// Exit status: 0 when the report has no errors, 1 when it has errors, 2 when the asset could not be
// read or the validator rejected it outright (the reason goes to stderr as one line).
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

// gltf-validator is a CommonJS package; load it relative to this script so the caller's cwd does not
// matter (tools/node_modules sits beside this file).
const require = createRequire(import.meta.url);
let validator;
try {
  validator = require("gltf-validator");
} catch (error) {
  process.stderr.write(`validate_gltf: gltf-validator is not installed (run: cd tools && npm install): ${error.message.split("\n")[0]}\n`);
  process.exit(2);
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function main() {
  const arg = process.argv[2];
  const fromStdin = arg === undefined || arg === "-";
  let data;
  try {
    data = fromStdin ? await readStdin() : await readFile(arg);
  } catch (error) {
    process.stderr.write(`validate_gltf: cannot read ${arg}: ${error.message}\n`);
    return 2;
  }
  const options = {
    uri: fromStdin ? "stdin" : path.basename(arg),
    writeTimestamp: false,
    maxIssues: 0,
  };
  if (!fromStdin) {
    // External buffers/images of a .gltf resolve next to the file; a GLB normally has none.
    const base = path.dirname(path.resolve(arg));
    options.externalResourceFunction = (uri) => readFile(path.resolve(base, decodeURIComponent(uri)));
  }
  let report;
  try {
    report = await validator.validateBytes(new Uint8Array(data), options);
  } catch (error) {
    process.stderr.write(`validate_gltf: validator rejected the input: ${error}\n`);
    return 2;
  }
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  return report.issues.numErrors === 0 ? 0 : 1;
}

process.exitCode = await main();
