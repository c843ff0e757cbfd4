// @tollgate/syncguard against real `tollgate serve` processes: the embedded store, and two servers
// sharing one Redis (when redis-server is installed). Each test names the syncguard spec rule
// (docs/specs/interface.md) it checks.
import { strict as assert } from "node:assert";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { createTollgateBackend, hashKey, LockError, type TollgateBackend } from "@tollgate/syncguard";
import { startRedis, startTollgate, type Running } from "./support/servers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RAW = Symbol.for("syncguard.rawData");

async function serverNowMs(url: string): Promise<number> {
  const r = new Redis(url, { lazyConnect: false });
  try {
    const [s, us] = (await r.call("TIME")) as [string, string];
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  } finally {
    r.disconnect();
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LockError, `expected LockError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}

interface Setup {
  name: string;
  start(): Promise<{ urls: [string, string]; stop(): Promise<void>; restart?: () => Promise<string> }>;
}

const setups: Setup[] = [
  {
    name: "embedded store",
    async start() {
      let s = await startTollgate();
      return { urls: [s.url, s.url], stop: () => s.stop() };
    },
  },
  {
    name: "two servers on one Redis",
    async start() {
      const redis = await startRedis();
      if (redis === null) return { urls: ["", ""], stop: async () => {} };
      const a = await startTollgate({ backend: redis.url });
      const b = await startTollgate({ backend: redis.url });
      return {
        urls: [a.url, b.url],
        stop: async () => {
          await a.stop();
          await b.stop();
          await redis.stop();
        },
      };
    },
  },
];

for (const setup of setups) {
  describe(`@tollgate/syncguard on ${setup.name}`, () => {
    let env: Awaited<ReturnType<Setup["start"]>>;
    let a: TollgateBackend;
    let b: TollgateBackend;
    let skip = false;
    let n = 0;
    const key = () => `res:${process.pid}:${++n}`;
    before(async () => {
      env = await setup.start();
      skip = env.urls[0] === "";
      if (skip) return;
      a = createTollgateBackend({ url: env.urls[0], keyPrefix: "app" });
      b = createTollgateBackend({ url: env.urls[1], keyPrefix: "app" });
    });
    after(async () => {
      if (!skip) {
        await a.dispose();
        await b.dispose();
      }
      await env.stop();
    });

    it("capabilities: fencing, server time", (t) => {
      if (skip) return t.skip("redis-server not installed");
      assert.deepEqual({ ...a.capabilities }, { backend: "tollgate", supportsFencing: true, timeAuthority: "server" });
      assert.ok(Object.isFrozen(a.capabilities));
    });

    it("acquire: {ok, lockId (22 base64url), expiresAtMs in server time, fence (15 digits)}; contention is {ok:false, reason:'locked'}", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const k = key();
      const before = await serverNowMs(env.urls[0]);
      const r = await a.acquire({ key: k, ttlMs: 5000 });
      const afterMs = await serverNowMs(env.urls[0]);
      assert.equal(r.ok, true);
      if (!r.ok) return;
      assert.match(r.lockId, /^[A-Za-z0-9_-]{22}$/);
      assert.match(r.fence, /^\d{15}$/);
      assert.ok(r.expiresAtMs >= before + 5000 - 5 && r.expiresAtMs <= afterMs + 5000 + 5, `${before} ${r.expiresAtMs} ${afterMs}`);
      const other = await b.acquire({ key: k, ttlMs: 5000 });
      assert.equal(other.ok, false);
      assert.equal((other as { reason?: string }).reason, "locked");
      assert.deepEqual(await b.release({ lockId: r.lockId }), { ok: true }, "release through the other server, by lockId alone");
    });

    it("fences strictly increase per key, lexicographically (ADR-004)", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const k = key();
      const fences: string[] = [];
      for (let i = 0; i < 6; i++) {
        const be = i % 2 ? a : b;
        const r = await be.acquire({ key: k, ttlMs: 5000 });
        assert.ok(r.ok);
        if (!r.ok) return;
        fences.push(r.fence);
        assert.deepEqual(await be.release({ lockId: r.lockId }), { ok: true });
      }
      for (let i = 1; i < fences.length; i++) assert.ok(fences[i]! > fences[i - 1]!, fences.join(" "));
      assert.deepEqual([...fences].sort(), fences);
    });

    it("release: at most once; unknown, malformed-but-valid and foreign lockIds are {ok:false}", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const r = await a.acquire({ key: key(), ttlMs: 5000 });
      assert.ok(r.ok);
      if (!r.ok) return;
      const results = await Promise.all([a.release({ lockId: r.lockId }), b.release({ lockId: r.lockId }), a.release({ lockId: r.lockId })]);
      assert.equal(results.filter((x) => x.ok).length, 1, JSON.stringify(results));
      assert.deepEqual(await a.release({ lockId: "AAAAAAAAAAAAAAAAAAAAAA" }), { ok: false });
      // 22 base64url chars carry 132 bits: a non-canonical spelling never aliases a real lock.
      const r2 = await a.acquire({ key: key(), ttlMs: 5000 });
      assert.ok(r2.ok);
      if (!r2.ok) return;
      const last = r2.lockId.at(-1)!;
      const alias = r2.lockId.slice(0, -1) + (last === "A" ? "B" : String.fromCharCode(last.charCodeAt(0) + 1));
      assert.deepEqual(await a.release({ lockId: alias }), { ok: false });
      assert.equal(await a.isLocked({ key: "x" }), false);
      assert.deepEqual(await a.release({ lockId: r2.lockId }), { ok: true });
    });

    it("extend: resets expiry to now + ttlMs (shorter or longer), returns the server expiry; never resurrects", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const k = key();
      const r = await a.acquire({ key: k, ttlMs: 10000 });
      assert.ok(r.ok);
      if (!r.ok) return;
      const now = await serverNowMs(env.urls[1]);
      const e = await b.extend({ lockId: r.lockId, ttlMs: 300 });
      assert.ok(e.ok);
      if (!e.ok) return;
      assert.ok(e.expiresAtMs < r.expiresAtMs, "shorter");
      assert.ok(Math.abs(e.expiresAtMs - (now + 300)) < 250, `${e.expiresAtMs} vs ${now + 300}`);
      const info = await a.lookup({ key: k });
      assert.ok(info && Math.abs(info.expiresAtMs - e.expiresAtMs) <= 2, "lookup reports the extended expiry");
      assert.equal(info?.acquiredAtMs, (await a.lookup({ lockId: r.lockId }))?.acquiredAtMs, "extend keeps acquiredAtMs");
      // Expired past syncguard's 1000 ms tolerance: gone for good.
      await sleep(300 + 1000 + 150);
      assert.deepEqual(await a.extend({ lockId: r.lockId, ttlMs: 5000 }), { ok: false });
      assert.equal(await a.isLocked({ key: k }), false);
      assert.deepEqual(await a.release({ lockId: r.lockId }), { ok: false });
    });

    it("liveness is isLive(expiresAtMs, serverNow, 1000): held until 1 s past expiresAtMs, then free", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const k = key();
      const r = await a.acquire({ key: k, ttlMs: 100 });
      assert.ok(r.ok);
      if (!r.ok) return;
      await sleep(100 + 400);
      assert.ok((await serverNowMs(env.urls[0])) > r.expiresAtMs);
      assert.equal(await a.isLocked({ key: k }), true, "within the tolerance");
      assert.equal((await b.acquire({ key: k, ttlMs: 1000 })).ok, false);
      const ext = await a.extend({ lockId: r.lockId, ttlMs: 100 });
      assert.equal(ext.ok, true, "extend inside the tolerance window succeeds, as isLive says");
      await sleep(100 + 1000 + 200);
      assert.equal(await a.isLocked({ key: k }), false);
      assert.equal(await a.lookup({ key: k }), null);
      assert.equal(await a.lookup({ lockId: r.lockId }), null, "lookup by lockId is null once expired");
      const again = await b.acquire({ key: k, ttlMs: 1000 });
      assert.ok(again.ok && again.fence > r.fence);
    });

    it("lookup: sanitised {keyHash, lockIdHash, expiresAtMs, acquiredAtMs, fence} by key and by lockId; raw data only by lockId", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const k = key();
      const t0 = await serverNowMs(env.urls[0]);
      const r = await a.acquire({ key: k, ttlMs: 5000 });
      const t1 = await serverNowMs(env.urls[0]);
      assert.ok(r.ok);
      if (!r.ok) return;
      const byKey = await b.lookup({ key: k });
      const byId = await b.lookup({ lockId: r.lockId });
      for (const info of [byKey, byId]) {
        assert.ok(info);
        assert.deepEqual(Object.keys(info).sort(), ["acquiredAtMs", "expiresAtMs", "fence", "keyHash", "lockIdHash"]);
        assert.equal(info.keyHash, hashKey(k));
        assert.equal(info.lockIdHash, hashKey(r.lockId));
        assert.equal(info.fence, r.fence);
        assert.ok(info.acquiredAtMs >= t0 - 2 && info.acquiredAtMs <= t1 + 2, `${t0} ${info.acquiredAtMs} ${t1}`);
        assert.ok(Math.abs(info.expiresAtMs - r.expiresAtMs) <= 2);
        const json = JSON.stringify(info);
        assert.ok(!json.includes(r.lockId) && !json.includes(k), "no raw identifiers");
      }
      assert.deepEqual((byId as any)[RAW], { key: k, lockId: r.lockId });
      assert.equal((byKey as any)[RAW], undefined);
      assert.equal(await a.lookup({ lockId: "AAAAAAAAAAAAAAAAAAAAAA" }), null);
      // Another prefix's backend does not see our locks by key or by lockId.
      const other = createTollgateBackend({ url: env.urls[0], keyPrefix: "other" });
      assert.equal(await other.lookup({ key: k }), null);
      assert.equal(await other.lookup({ lockId: r.lockId }), null);
      await other.dispose();
      await a.release({ lockId: r.lockId });
      assert.equal(await b.lookup({ key: k }), null);
      assert.equal(await b.lookup({ lockId: r.lockId }), null);
    });

    it("isLocked and lookup are read-only: they never move the expiry", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const k = key();
      const r = await a.acquire({ key: k, ttlMs: 3000 });
      assert.ok(r.ok);
      for (let i = 0; i < 5; i++) {
        assert.equal(await b.isLocked({ key: k }), true);
        const info = await b.lookup({ key: k });
        assert.ok(info && r.ok && Math.abs(info.expiresAtMs - r.expiresAtMs) <= 2);
      }
    });

    it("keys: NFC-normalised (café == cafe\\u0301), up to 512 UTF-8 bytes, hashed to fit the server", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const r = await a.acquire({ key: `café-${n}`, ttlMs: 5000 });
      assert.ok(r.ok);
      assert.equal((await b.acquire({ key: `cafe\u0301-${n}`, ttlMs: 5000 })).ok, false);
      const long = "€".repeat(170) + "ab"; // 512 bytes: app: + key is over the server's 512
      const l = await a.acquire({ key: long, ttlMs: 5000 });
      assert.ok(l.ok);
      if (!l.ok) return;
      assert.equal(await b.isLocked({ key: long }), true);
      const info = await b.lookup({ lockId: l.lockId });
      assert.equal(info?.keyHash, hashKey(long));
      assert.equal((info as any)[RAW].key, long);
      await rejectsWith(a.acquire({ key: long + "x", ttlMs: 5000 }), "InvalidArgument", /512/);
      await rejectsWith(a.acquire({ key: "", ttlMs: 5000 }), "InvalidArgument", /empty/);
      await rejectsWith(a.isLocked({ key: 7 as unknown as string }), "InvalidArgument");
    });

    it("validation: ttlMs a positive integer, lockId 22 base64url chars, checked before any I/O", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      for (const ttlMs of [0, -1, 1.5, Number.NaN, 86_400_000]) {
        await rejectsWith(a.acquire({ key: key(), ttlMs }), "InvalidArgument", /ttlMs/);
      }
      for (const lockId of ["", "short", "A".repeat(23), "AAAAAAAAAAAAAAAAAAAAA+"]) {
        await rejectsWith(a.release({ lockId }), "InvalidArgument", /lockId/);
        await rejectsWith(a.extend({ lockId, ttlMs: 1000 }), "InvalidArgument", /lockId/);
        await rejectsWith(a.lookup({ lockId }), "InvalidArgument", /lockId/);
      }
    });

    it("AbortSignal: an aborted signal fails with Aborted and sends nothing", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const k = key();
      const signal = AbortSignal.abort();
      await rejectsWith(a.acquire({ key: k, ttlMs: 5000, signal }), "Aborted");
      assert.equal(await a.isLocked({ key: k }), false);
      await rejectsWith(a.isLocked({ key: k, signal }), "Aborted");
      await rejectsWith(a.release({ lockId: "AAAAAAAAAAAAAAAAAAAAAA", signal }), "Aborted");
    });

    it("await using: disposal releases once, never throws; a failed acquisition disposes as a no-op", async (t) => {
      if (skip) return t.skip("redis-server not installed");
      const k = key();
      const r = await a.acquire({ key: k, ttlMs: 5000 });
      assert.ok(r.ok);
      const failed = await b.acquire({ key: k, ttlMs: 5000 });
      assert.equal(failed.ok, false);
      await failed[Symbol.asyncDispose]();
      assert.deepEqual(await failed.release(), { ok: false });
      assert.equal(await a.isLocked({ key: k }), true);
      if (!r.ok) return;
      const e = await r.extend(2000);
      assert.equal(e.ok, true);
      await Promise.all([r[Symbol.asyncDispose](), r[Symbol.asyncDispose]()]);
      await r[Symbol.asyncDispose]();
      assert.equal(await a.isLocked({ key: k }), false);
    });
  });
}

describe("@tollgate/syncguard failures", () => {
  it("locks and fences survive a restart of the embedded store (kill -9)", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dataDir = join(mkdtempSync(join(tmpdir(), "tollgate-ts-keep-")), "data");
    try {
      const s1 = await startTollgate({ dataDir });
      const be1 = createTollgateBackend({ url: s1.url });
      const r = await be1.acquire({ key: "durable", ttlMs: 60000 });
      assert.ok(r.ok);
      if (!r.ok) return;
      const info1 = await be1.lookup({ lockId: r.lockId });
      await be1.dispose();
      await s1.kill();
      const s2 = await startTollgate({ dataDir });
      const be2 = createTollgateBackend({ url: s2.url });
      try {
        assert.equal(await be2.isLocked({ key: "durable" }), true);
        const info2 = await be2.lookup({ lockId: r.lockId });
        assert.ok(info1 && info2);
        assert.equal(info2.acquiredAtMs, info1.acquiredAtMs);
        assert.equal(info2.fence, r.fence);
        assert.deepEqual(await be2.release({ lockId: r.lockId }), { ok: true });
        const again = await be2.acquire({ key: "durable", ttlMs: 1000 });
        assert.ok(again.ok && again.fence > r.fence);
      } finally {
        await be2.dispose();
        await s2.stop();
      }
    } finally {
      rmSync(join(dataDir, ".."), { recursive: true, force: true });
    }
  });

  it("server down is ServiceUnavailable; a refused password is AuthFailed and never echoed", async () => {
    const s = await startTollgate({ password: "s3cret-pw" });
    const ok = createTollgateBackend({ url: s.url, password: "s3cret-pw" });
    assert.equal((await ok.acquire({ key: "k", ttlMs: 1000 })).ok, true);
    const bad = createTollgateBackend({ url: s.url.replace("redis://", "redis://:wrong-pw@"), timeoutMs: 2000 });
    await assert.rejects(bad.isLocked({ key: "k" }), (e: unknown) => {
      assert.ok(e instanceof LockError);
      assert.equal(e.code, "AuthFailed", e.message);
      assert.ok(!e.message.includes("wrong-pw") && !e.message.includes("s3cret"));
      return true;
    });
    await bad.dispose();
    await s.stop();
    await rejectsWith(ok.isLocked({ key: "k" }), "ServiceUnavailable");
    await ok.dispose();
  });

  it("lockErrorClass: errors are instances of the caller's LockError class", async () => {
    class TheirLockError extends Error {
      constructor(
        public code: string,
        message?: string,
        public context?: object,
      ) {
        super(message ?? code);
        this.name = "LockError";
      }
    }
    const be = createTollgateBackend({ url: "redis://127.0.0.1:1", lockErrorClass: TheirLockError as any, timeoutMs: 1000 });
    await assert.rejects(be.acquire({ key: "", ttlMs: 1 }), (e: unknown) => e instanceof TheirLockError && (e as TheirLockError).code === "InvalidArgument");
    await be.dispose();
    assert.throws(() => createTollgateBackend({ url: "http://nope" }), (e: unknown) => e instanceof LockError && e.code === "InvalidArgument");
    assert.throws(() => createTollgateBackend({ keyPrefix: "p".repeat(600) }), (e: unknown) => e instanceof LockError && /prefix/.test(e.message));
  });
});
