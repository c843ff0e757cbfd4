// Throughput of the TypeScript packages next to their peers, in one node process, at 1 and 64
// concurrent operations:
//   - consume() decisions/s: @tollgate/ws-kit (THROTTLE on `tollgate serve`) vs @ws-kit/memory;
//   - acquire+release pairs/s: @tollgate/syncguard vs redlock: on the durable embedded store vs
//     redlock on a Redis with appendfsync always (both on disk before replying), and on
//     `tollgate serve --backend redis` vs redlock on that same (non-persistent) redis-server.
// Usage: npm run bench [-- --seconds S]   (TOLLGATE_BIN selects the server binary)
import { memoryRateLimiter } from "@ws-kit/memory";
import { Redis } from "ioredis";
import Redlock from "redlock";
import { createTollgateBackend } from "@tollgate/syncguard";
import { tollgateRateLimiter } from "@tollgate/ws-kit";
import { startRedis, startTollgate } from "../test/support/servers.js";

const secondsArg = process.argv.indexOf("--seconds");
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 3;

// Runs `op(worker, i)` from `concurrency` workers for SECONDS; returns completed operations/s.
async function measure(concurrency: number, op: (worker: number, i: number) => Promise<unknown>): Promise<number> {
  // Warm-up: connections, scripts, JIT.
  const warmEnd = Date.now() + 300;
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    for (let i = 0; Date.now() < warmEnd; i++) await op(w, -1 - i);
  }));
  let done = 0;
  const start = process.hrtime.bigint();
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    for (let i = 0; Date.now() < end; i++) {
      await op(w, i);
      done++;
    }
  }));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  return done / secs;
}

const rows: string[] = [];
function row(what: string, c: number, ours: number, peer: number) {
  rows.push(`| ${what} | ${c} | ${Math.round(ours)} | ${Math.round(peer)} | ${(ours / peer).toFixed(2)}× |`);
  console.error(rows.at(-1));
}

const tollgate = await startTollgate();
const redis = await startRedis();
const durableRedis = await startRedis({ fsync: true });
if (redis === null || durableRedis === null) throw new Error("the benchmark needs redis-server (apt-get install redis-server)");
const tollgateOnRedis = await startTollgate({ backend: redis.url });
try {
  // ---- rate limiting
  const tg = tollgateRateLimiter({ url: tollgate.url, capacity: 1e9, tokensPerSecond: 1e9, prefix: "bench" });
  const mem = memoryRateLimiter({ capacity: 1e9, tokensPerSecond: 1e9 });
  for (const c of [1, 64]) {
    const ours = await measure(c, (w, i) => tg.consume(`user:${w}:${i & 1023}`, 1));
    const peer = await measure(c, (w, i) => mem.consume(`user:${w}:${i & 1023}`, 1));
    row("consume(): @tollgate/ws-kit vs @ws-kit/memory", c, ours, peer);
  }
  await tg.dispose();

  // ---- locks
  const cases = [
    ["tollgate serve (embedded store, fsync) vs redlock on redis-server (appendfsync always)", tollgate.url, durableRedis.url],
    ["tollgate serve --backend redis vs redlock on that redis-server (no persistence)", tollgateOnRedis.url, redis.url],
  ] as const;
  for (const [name, url, redlockUrl] of cases) {
    const redlockClient = new Redis(redlockUrl);
    const redlock = new Redlock([redlockClient], { retryCount: 0 });
    const redlockPair = async (w: number, i: number) => {
      const lock = await redlock.acquire([`rl:${w}:${i}`], 30000);
      await lock.release();
    };
    const be = createTollgateBackend({ url, keyPrefix: "bench" });
    const pair = async (w: number, i: number) => {
      const r = await be.acquire({ key: `sg:${w}:${i}`, ttlMs: 30000 });
      if (!r.ok) throw new Error("unexpected contention");
      await be.release({ lockId: r.lockId });
    };
    for (const c of [1, 64]) {
      const ours = await measure(c, pair);
      const peer = await measure(c, redlockPair);
      row(`acquire+release: @tollgate/syncguard on ${name}`, c, ours, peer);
    }
    await be.dispose();
    redlockClient.disconnect();
  }
} finally {
  await tollgate.stop();
  await tollgateOnRedis.stop();
  await redis.stop();
  await durableRedis.stop();
}

console.log(`\n${SECONDS} s per cell, node ${process.version}, one process, ops/s:\n`);
console.log("| operation | concurrent | ours (ops/s) | peer (ops/s) | ratio |");
console.log("|---|---|---|---|---|");
for (const r of rows) console.log(r);
