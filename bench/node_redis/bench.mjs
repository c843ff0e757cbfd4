// Peer benchmark for bench/backend_bench.sh: the same two workloads as bench/backend_bench.cc, run
// by node libraries against the same redis-server.
//
//   node bench.mjs --redis redis://127.0.0.1:PORT [--concurrency N] [--seconds S]
//
// N concurrent async loops in this one process, each with its own ioredis connection (as each
// backend_bench thread has its own Backend connection), for S seconds per workload:
//   lease    redlock.acquire([random key of 10,000], 10000 ms) then lock.release(); counts completed
//            pairs (retryCount 0: an acquire that finds the key held counts as "busy", not a pair)
//   throttle RateLimiterRedis.consume(random key of 100,000, 1 point) with points 100, duration 10 s
//            (a fixed window; tollgate's is a token bucket of capacity 100 refilling 10/s); counts
//            decisions (a rejection with a RateLimiterRes is a "denied" decision)
// Prints, like backend_bench:
//   node-redlock lease_pairs_per_sec=... busy=... threads=N seconds=...
//   node-rate-limiter-flexible throttle_per_sec=... allowed=... denied=... threads=N seconds=...
import { randomInt } from "node:crypto";
import { readFileSync } from "node:fs";

import Redis from "ioredis";
import { RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import Redlock, { ExecutionError } from "redlock";

const LEASE_KEYS = 10_000;
const THROTTLE_KEYS = 100_000;

function parseArgs(argv) {
  const opts = { redis: "", concurrency: 8, seconds: 5 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) usage(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === "--redis") opts.redis = v();
    else if (a === "--concurrency" || a === "--threads") opts.concurrency = Number(v());
    else if (a === "--seconds") opts.seconds = Number(v());
    else usage(`unknown argument ${a}`);
  }
  if (!opts.redis) usage("--redis URL is required");
  if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) usage("bad --concurrency");
  if (!(opts.seconds > 0)) usage("bad --seconds");
  return opts;
}

function usage(why) {
  console.error(`bench.mjs: ${why}\nusage: node bench.mjs --redis URL [--concurrency N] [--seconds S]`);
  process.exit(2);
}

// Runs `step(i, counts)` in `n` concurrent loops for `seconds`; returns the summed counts and the
// elapsed time. Any thrown error stops the run.
async function runLoops(n, seconds, step) {
  const counts = Array.from({ length: n }, () => ({ ops: 0, a: 0, b: 0 }));
  let stop = false;
  const t0 = process.hrtime.bigint();
  const timer = setTimeout(() => {
    stop = true;
  }, seconds * 1000);
  const loops = counts.map(async (c, i) => {
    while (!stop) await step(i, c);
  });
  try {
    await Promise.all(loops);
  } finally {
    clearTimeout(timer);
    stop = true;
  }
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const total = counts.reduce((s, c) => ({ ops: s.ops + c.ops, a: s.a + c.a, b: s.b + c.b }));
  return { ...total, elapsed };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const n = opts.concurrency;
  const clients = Array.from(
    { length: n },
    () => new Redis(opts.redis, { enableOfflineQueue: true, maxRetriesPerRequest: 1 }),
  );
  await Promise.all(clients.map((c) => c.ping()));

  // --- locks: redlock ---
  const redlocks = clients.map((c) => new Redlock([c], { retryCount: 0 }));
  // Warm up (loads the scripts) outside the timed window.
  await Promise.all(redlocks.map(async (r, i) => (await r.acquire([`bench:redlock:warm:${i}`], 10000)).release()));
  const lease = await runLoops(n, opts.seconds, async (i, c) => {
    let lock;
    try {
      lock = await redlocks[i].acquire([`bench:redlock:${randomInt(LEASE_KEYS)}`], 10000);
    } catch (e) {
      if (e instanceof ExecutionError) {
        c.a++;  // held by another loop
        return;
      }
      throw e;
    }
    await lock.release();
    c.ops++;
  });
  console.log(
    `node-redlock lease_pairs_per_sec=${Math.round(lease.ops / lease.elapsed)} busy=${lease.a} ` +
      `threads=${n} seconds=${lease.elapsed.toFixed(2)}`,
  );

  // --- rate limiting: rate-limiter-flexible ---
  const limiters = clients.map(
    (c) => new RateLimiterRedis({ storeClient: c, keyPrefix: "bench:rlf", points: 100, duration: 10 }),
  );
  await Promise.all(limiters.map((l, i) => l.consume(`warm:${i}`, 1)));
  const thr = await runLoops(n, opts.seconds, async (i, c) => {
    try {
      await limiters[i].consume(String(randomInt(THROTTLE_KEYS)), 1);
      c.a++;
    } catch (e) {
      if (!(e instanceof RateLimiterRes)) throw e;
      c.b++;
    }
    c.ops++;
  });
  console.log(
    `node-rate-limiter-flexible throttle_per_sec=${Math.round(thr.ops / thr.elapsed)} ` +
      `allowed=${thr.a} denied=${thr.b} threads=${n} seconds=${thr.elapsed.toFixed(2)}`,
  );

  // Versions, for the report.
  const ver = (p) =>
    JSON.parse(readFileSync(new URL(`./node_modules/${p}/package.json`, import.meta.url))).version;
  console.log(
    `node-versions node=${process.version} redlock=${ver("redlock")} ` +
      `rate-limiter-flexible=${ver("rate-limiter-flexible")} ioredis=${ver("ioredis")}`,
  );
  await Promise.all(clients.map((c) => c.quit()));
}

main().catch((e) => {
  console.error("bench.mjs:", e);
  process.exit(1);
});
