// BullMQ producer for the benchmark: reads one JSON file path per stdin line (a list of
// [key, due_ms] pairs), adds them as delayed jobs with Queue.addBulk in chunks of 1000
// (the way a BullMQ user bulk-schedules), and answers "ok" on stdout when Redis has them.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const [modules, url] = process.argv.slice(2);
const { Queue } = require(path.join(modules, "bullmq"));

const queue = new Queue("bench", { connection: { url, maxRetriesPerRequest: null } });
const CHUNK = 1000;

async function schedule(file) {
  const items = JSON.parse(fs.readFileSync(file, "utf8"));
  for (let i = 0; i < items.length; i += CHUNK) {
    const now = Date.now();
    await queue.addBulk(
      items.slice(i, i + CHUNK).map(([key, due]) => ({
        name: key,
        data: {},
        opts: { delay: Math.max(0, due - now), jobId: key, removeOnComplete: true },
      })),
    );
  }
}

queue.waitUntilReady().then(() => {
  process.stdout.write("ready\n");
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("line", async (file) => {
    await schedule(file.trim());
    process.stdout.write("ok\n");
  });
  lines.on("close", async () => {
    await queue.close();
    process.exit(0);
  });
});
