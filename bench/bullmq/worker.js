// BullMQ worker for the benchmark: one Worker (concurrency 100) on the "bench" queue whose
// handler records (job name, wall ms) in memory, like every other system's no-op. It writes
// <out> and exits once `expect` distinct jobs ran, or on SIGTERM; <out>.ready marks it ready.
"use strict";
const fs = require("fs");
const path = require("path");
const [modules, url, expect, out] = process.argv.slice(2);
const { Worker } = require(path.join(modules, "bullmq"));

const fires = [];
const seen = new Set();
const connection = { url, maxRetriesPerRequest: null };
const worker = new Worker(
  "bench",
  async (job) => {
    fires.push(`${job.name}\t${Date.now().toFixed(3)}\n`);
    seen.add(job.name);
    if (seen.size >= Number(expect)) setImmediate(finish);
  },
  { connection, concurrency: 100, removeOnComplete: { count: 0 }, removeOnFail: { count: 0 } },
);
let finished = false;
async function finish() {
  if (finished) return;
  finished = true;
  fs.writeFileSync(out, fires.join(""));
  await worker.close();
  process.exit(0);
}
process.on("SIGTERM", finish);
worker.waitUntilReady().then(() => fs.writeFileSync(`${out.replace(/\.tsv$/, "")}.ready`, ""));
