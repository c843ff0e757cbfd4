// Peer benchmark: the in-memory token-bucket limiter from @ws-kit/memory on the same
// single-thread workload as BM_Throttle in bench/limiter_bench.cc:
//   1M keys "user:<10000000+i>", capacity 30, 10 tokens/s, cost 1, every key warmed once,
//   then a timed loop over a pre-drawn stream of 2^22 key indices (uniform, or Zipf s=1.0 by
//   inverse CDF over harmonic weights), cycled.
// The stream is bit-identical to limiter_bench.cc's: the same mt19937_64(1234) generator, the
// same `rng() % kKeys` for uniform and the same generate_canonical -> lower_bound for Zipf
// (libstdc++ semantics), reimplemented below with 32-bit halves.
//
// API used (as documented in the package README):
//   import { memoryRateLimiter } from "@ws-kit/memory";
//   const limiter = memoryRateLimiter({ capacity: 30, tokensPerSecond: 10 });
//   const { allowed, remaining, retryAfterMs } = await limiter.consume(key, 1);
// consume() is async (returns a Promise); every call is awaited sequentially, one decision at a
// time, as a single request handler would.
//
// Output: one machine-readable line per distribution:
//   ws-kit/memory <uniform|zipf> decisions_per_sec=... p50_ns=... p99_ns=... p999_ns=... ...
//
// Usage: node [--expose-gc] memory_limiter_bench.mjs [--dist=uniform|zipf|both] [--seconds=3]

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { memoryRateLimiter } from "@ws-kit/memory";

const K_KEYS = 1_000_000;
const K_STREAM = 1 << 22; // pre-drawn key indices, cycled
const K_LAT_SAMPLES = 1_000_000;
const CAPACITY = 30;
const TOKENS_PER_SECOND = 10;
const COST = 1;

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = /^--([^=]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`bad argument ${a}`);
    return [m[1], m[2]];
  }),
);
const dist = args.dist ?? "both";
const minSeconds = Number(args.seconds ?? 3);
if (!["uniform", "zipf", "both"].includes(dist)) throw new Error(`bad --dist ${dist}`);
if (!(minSeconds > 0)) throw new Error(`bad --seconds ${args.seconds}`);

// ---- mt19937_64, state as 32-bit halves (hi, lo) ------------------------------------------------
class MT19937_64 {
  constructor(seed) {
    this.hi = new Uint32Array(312);
    this.lo = new Uint32Array(312);
    const M64 = (1n << 64n) - 1n;
    let x = BigInt(seed) & M64;
    for (let i = 0; i < 312; i++) {
      if (i > 0) x = (6364136223846793005n * (x ^ (x >> 62n)) + BigInt(i)) & M64;
      this.hi[i] = Number(x >> 32n);
      this.lo[i] = Number(x & 0xffffffffn);
    }
    this.idx = 312;
    this.outHi = 0;
    this.outLo = 0;
  }
  twist() {
    const hi = this.hi;
    const lo = this.lo;
    for (let i = 0; i < 312; i++) {
      const j = (i + 1) % 312;
      const k = (i + 156) % 312;
      // x = (mt[i] & 0xFFFFFFFF80000000) | (mt[j] & 0x7FFFFFFF)
      const xh = hi[i];
      const xl = ((lo[i] & 0x80000000) | (lo[j] & 0x7fffffff)) >>> 0;
      // x >> 1
      let nh = xh >>> 1;
      let nl = ((xl >>> 1) | ((xh & 1) << 31)) >>> 0;
      if (xl & 1) {
        nh ^= 0xb5026f5a;
        nl ^= 0xa96619e9;
      }
      hi[i] = (hi[k] ^ nh) >>> 0;
      lo[i] = (lo[k] ^ nl) >>> 0;
    }
    this.idx = 0;
  }
  // Advances; result in this.outHi / this.outLo.
  next() {
    if (this.idx >= 312) this.twist();
    let yh = this.hi[this.idx];
    let yl = this.lo[this.idx];
    this.idx++;
    // y ^= (y >> 29) & 0x5555555555555555
    let sh = yh >>> 29;
    let sl = ((yl >>> 29) | (yh << 3)) >>> 0;
    yh = (yh ^ (sh & 0x55555555)) >>> 0;
    yl = (yl ^ (sl & 0x55555555)) >>> 0;
    // y ^= (y << 17) & 0x71D67FFFEDA60000
    sh = ((yh << 17) | (yl >>> 15)) >>> 0;
    sl = (yl << 17) >>> 0;
    yh = (yh ^ (sh & 0x71d67fff)) >>> 0;
    yl = (yl ^ (sl & 0xeda60000)) >>> 0;
    // y ^= (y << 37) & 0xFFF7EEE000000000
    sh = (yl << 5) >>> 0;
    yh = (yh ^ (sh & 0xfff7eee0)) >>> 0;
    // y ^= y >> 43
    yl = (yl ^ (yh >>> 11)) >>> 0;
    this.outHi = yh;
    this.outLo = yl;
  }
}

function drawStream(zipf) {
  const rng = new MT19937_64(1234);
  const s = new Uint32Array(K_STREAM);
  if (!zipf) {
    // rng() % kKeys, exactly: (hi * 2^32 + lo) mod n, all intermediates < 2^53.
    const twoTo32ModN = 2 ** 32 % K_KEYS;
    for (let i = 0; i < K_STREAM; i++) {
      rng.next();
      s[i] = ((rng.outHi % K_KEYS) * twoTo32ModN + rng.outLo) % K_KEYS;
    }
    return s;
  }
  // Zipf(1.0) over kKeys by inverse CDF on a precomputed table (harmonic weights).
  const cdf = new Float64Array(K_KEYS);
  let sum = 0;
  for (let i = 0; i < K_KEYS; i++) cdf[i] = sum += 1.0 / (i + 1);
  const ONE_BELOW = 1 - 2 ** -53; // nextafter(1.0, 0.0)
  for (let i = 0; i < K_STREAM; i++) {
    rng.next();
    // std::uniform_real_distribution<double>(0, sum): generate_canonical<double, 53> with a 64-bit
    // engine = double(x) / 2^64 (hi * 2^32 is exact, the add rounds once, like the C++ cast).
    let c = (rng.outHi * 2 ** 32 + rng.outLo) / 2 ** 64;
    if (c >= 1) c = ONE_BELOW;
    const u = c * sum;
    // std::lower_bound: first index with cdf[idx] >= u.
    let lo = 0;
    let n = K_KEYS;
    while (n > 0) {
      const half = n >>> 1;
      if (cdf[lo + half] < u) {
        lo += half + 1;
        n -= half + 1;
      } else {
        n = half;
      }
    }
    s[i] = lo;
  }
  return s;
}

function percentile(sorted, num, den) {
  return sorted[Math.floor((sorted.length * num) / den)];
}

async function run(name, zipf, keys) {
  const t0 = process.hrtime.bigint();
  const stream = drawStream(zipf);
  const genMs = Number(process.hrtime.bigint() - t0) / 1e6;
  let checksum = 0;
  for (let i = 0; i < K_STREAM; i++) checksum = (checksum * 31 + stream[i]) >>> 0;

  const limiter = memoryRateLimiter({ capacity: CAPACITY, tokensPerSecond: TOKENS_PER_SECOND });
  // Warm: every key has a live bucket, as in steady state.
  const w0 = process.hrtime.bigint();
  for (let i = 0; i < K_KEYS; i++) await limiter.consume(keys[i], COST);
  const warmS = Number(process.hrtime.bigint() - w0) / 1e9;

  // Throughput: sequentially awaited decisions for at least minSeconds.
  const BATCH = 1 << 14;
  const minNs = BigInt(Math.round(minSeconds * 1e9));
  let iters = 0;
  let allowed = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  do {
    for (let b = 0; b < BATCH; b++) {
      const d = await limiter.consume(keys[stream[iters++ & (K_STREAM - 1)]], COST);
      if (d.allowed) allowed++;
    }
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < minNs);
  const seconds = Number(elapsed) / 1e9;

  // Latency: a separate pass of 1M individually timed decisions (hrtime read cost included).
  const lat = new Float64Array(K_LAT_SAMPLES);
  for (let j = 0; j < K_LAT_SAMPLES; j++) {
    const key = keys[stream[j & (K_STREAM - 1)]];
    const a = process.hrtime.bigint();
    const d = await limiter.consume(key, COST);
    const b = process.hrtime.bigint();
    lat[j] = Number(b - a);
    if (d === undefined) throw new Error("unreachable");
  }
  lat.sort();
  const mem = process.memoryUsage();
  console.log(
    `ws-kit/memory ${name}` +
      ` decisions_per_sec=${Math.round(iters / seconds)}` +
      ` p50_ns=${percentile(lat, 50, 100)}` +
      ` p99_ns=${percentile(lat, 99, 100)}` +
      ` p999_ns=${percentile(lat, 999, 1000)}` +
      ` decisions=${iters} seconds=${seconds.toFixed(3)}` +
      ` allowed_frac=${(allowed / iters).toFixed(4)}` +
      ` warm_sec=${warmS.toFixed(3)} stream_gen_ms=${genMs.toFixed(0)}` +
      ` stream_checksum=${checksum}` +
      ` heap_used_mb=${(mem.heapUsed / 2 ** 20).toFixed(0)} rss_mb=${(mem.rss / 2 ** 20).toFixed(0)}` +
      ` mode=async_sequential_await`,
  );
  limiter.dispose();
}

const require = createRequire(import.meta.url);
const pkgVersion = (name) => {
  try {
    return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
  } catch {
    // Packages without "./package.json" in "exports": walk from the entry point.
    const entry = require.resolve(name);
    const root = entry.slice(0, entry.lastIndexOf(`/node_modules/${name}/`));
    return JSON.parse(readFileSync(`${root}/node_modules/${name}/package.json`, "utf8")).version;
  }
};

console.log(
  `ws-kit/memory versions node=${process.version} v8=${process.versions.v8}` +
    ` ws_kit_memory=${pkgVersion("@ws-kit/memory")}` +
    ` max_old_space_mb=${Math.round(
      (await import("node:v8")).getHeapStatistics().heap_size_limit / 2 ** 20,
    )}`,
);
console.log(
  "ws-kit/memory note: consume() is async (returns a Promise); each decision is awaited" +
    " sequentially; clock is the package default (Date.now())",
);

const keys = new Array(K_KEYS);
for (let i = 0; i < K_KEYS; i++) keys[i] = `user:${10_000_000 + i}`;

const dists = dist === "both" ? ["uniform", "zipf"] : [dist];
for (const d of dists) {
  await run(d, d === "zipf", keys);
  if (typeof globalThis.gc === "function") globalThis.gc();
}
