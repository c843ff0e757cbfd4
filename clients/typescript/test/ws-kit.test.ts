// @tollgate/ws-kit end to end: the real @ws-kit/core router (through its own test harness, which
// drives the router's dispatch, middleware and error path with in-memory sockets) and the real
// @ws-kit/rate-limit middleware, against a real `tollgate serve`. Several router instances stand
// for several pods.
import { strict as assert } from "node:assert";
import { after, before, describe, it } from "node:test";
import { createTestRouter } from "@ws-kit/core/testing";
import { memoryRateLimiter } from "@ws-kit/memory";
import { rateLimit, type RateLimiter } from "@ws-kit/rate-limit";
import { createRouter, message, withZod, z } from "@ws-kit/zod";
import { tollgatePolicyLimiter, tollgateRateLimiter, TollgateRateLimitError } from "@tollgate/ws-kit";
import { startTollgate, type Running } from "./support/servers.js";

const POLICIES = `
policies:
  chat:
    layers:
      - { name: global, key: "global",      capacity: 1000, rate: 1000 }
      - { name: ip,     key: "ip:{ip}",     capacity: 4,    rate: 0.5 }
      - { name: user,   key: "user:{user}", capacity: 3,    rate: 0.25 }
`;

const Say = message("SAY", { text: z.string() });
const Said = message("SAID", { text: z.string() });

interface Data extends Record<string, unknown> {
  userId: string;
  ip: string;
}

// One "pod": a router with the rate-limit middleware in front of a handler that answers SAID.
function pod(limiter: RateLimiter, key?: (ctx: any) => string) {
  const router = createRouter<Data>().plugin(withZod());
  router.use(rateLimit({ limiter, ...(key ? { key } : { key: (ctx: any) => `user:${ctx.data.userId}` }) }));
  let handled = 0;
  router.on(Say, (ctx: any) => {
    handled++;
    ctx.send(Said, { text: "ok" });
  });
  const tr = createTestRouter<Data>({ create: () => router as any });
  return { tr, handled: () => handled };
}

async function settle(trs: { flush(): Promise<void> }[]) {
  for (let i = 0; i < 3; i++) {
    for (const t of trs) await t.flush();
    await new Promise((r) => setTimeout(r, 20));
  }
}

function errorsOf(frames: readonly any[]) {
  return frames.filter((f) => f.type === "ERROR" || f.type === "RPC_ERROR").map((f) => f.payload);
}

describe("@tollgate/ws-kit", () => {
  let server: Running;
  const disposers: (() => Promise<void>)[] = [];
  before(async () => {
    server = await startTollgate({ policies: POLICIES });
  });
  after(async () => {
    for (const d of disposers) await d();
    await server.stop();
  });
  const limiter = (o: { capacity: number; tokensPerSecond: number; prefix?: string }) => {
    const l = tollgateRateLimiter({ url: server.url, ...o });
    disposers.push(() => l.dispose());
    return l;
  };

  it("consume: allowed while tokens last, then retryAfterMs; null exactly when cost > capacity", async () => {
    const l = limiter({ capacity: 3, tokensPerSecond: 1, prefix: "t1" });
    assert.deepEqual(await l.consume("k", 1), { allowed: true, remaining: 2 });
    assert.deepEqual(await l.consume("k", 2), { allowed: true, remaining: 0 });
    const denied = await l.consume("k", 1);
    assert.equal(denied.allowed, false);
    assert.ok(!denied.allowed && denied.retryAfterMs !== null && denied.retryAfterMs > 0 && denied.retryAfterMs <= 1000);
    const never = await l.consume("k", 4);
    assert.deepEqual(never, { allowed: false, remaining: 0, retryAfterMs: null });
    const fresh = await l.consume("other", 4);
    assert.equal(fresh.allowed, false);
    assert.ok(!fresh.allowed && fresh.retryAfterMs === null, "cost > capacity is never allowed, even on a full bucket");
    const full = await l.consume("other2", 3);
    assert.deepEqual(full, { allowed: true, remaining: 0 }, "cost == capacity is allowed");
    assert.deepEqual(l.getPolicy(), { capacity: 3, tokensPerSecond: 1, prefix: "t1" });
  });

  it("fractional rates work as written: 0.5 token/s means a 2 s wait", async () => {
    const l = limiter({ capacity: 1.5, tokensPerSecond: 0.5, prefix: "t2" });
    assert.equal((await l.consume("k", 1)).allowed, true);
    const d = await l.consume("k", 1);
    assert.equal(d.allowed, false);
    // 0.5 tokens left, 0.5 more at 0.5/s: 1000 ms.
    assert.ok(!d.allowed && d.retryAfterMs !== null && d.retryAfterMs > 900 && d.retryAfterMs <= 1000, JSON.stringify(d));
  });

  it("rejects bad policies and costs, naming the option and its range", () => {
    assert.throws(() => tollgateRateLimiter({ url: server.url, capacity: 0, tokensPerSecond: 1 }), /capacity must be a positive number/);
    assert.throws(() => tollgateRateLimiter({ url: server.url, capacity: 1, tokensPerSecond: Number.NaN }), /tokensPerSecond must be/);
    assert.throws(() => tollgateRateLimiter({ url: server.url, capacity: 1e-10, tokensPerSecond: 1 }), /at most 9 decimal places/);
    assert.throws(() => tollgateRateLimiter({ url: "http://x", capacity: 1, tokensPerSecond: 1 }), /redis:\/\//);
    const l = limiter({ capacity: 1, tokensPerSecond: 1 });
    return assert.rejects(l.consume("k", -1), (e: unknown) => e instanceof TollgateRateLimitError && e.kind === "invalid");
  });

  it("three router instances (pods) share one limit; the denied message gets ws-kit's error with the retry time", async () => {
    const pods = [0, 1, 2].map(() => pod(limiter({ capacity: 4, tokensPerSecond: 0.1, prefix: "pods" })));
    const conns = await Promise.all(pods.map((p) => p.tr.connect({ data: { userId: "alice", ip: "10.0.0.1" } })));
    for (let round = 0; round < 2; round++) for (const c of conns) c.send("SAY", { text: "hi" });
    await settle(pods.map((p) => p.tr));
    const handled = pods.reduce((n, p) => n + p.handled(), 0);
    assert.equal(handled, 4, "6 messages over 3 pods, one shared bucket of 4");
    const errors = conns.flatMap((c) => errorsOf(c.outgoing()));
    assert.equal(errors.length, 2);
    for (const e of errors) {
      assert.equal(e.code, "RESOURCE_EXHAUSTED");
      assert.ok(e.retryAfterMs > 0 && e.retryAfterMs <= 10000, JSON.stringify(e));
      assert.equal(e.details.capacity, 4);
    }
    for (const p of pods) await p.tr.close();
  });

  it("the same setup on @ws-kit/memory lets each pod spend the whole limit (why a shared limiter matters)", async () => {
    const pods = [0, 1, 2].map(() => pod(memoryRateLimiter({ capacity: 4, tokensPerSecond: 0.1 })));
    const conns = await Promise.all(pods.map((p) => p.tr.connect({ data: { userId: "alice", ip: "10.0.0.1" } })));
    for (let round = 0; round < 2; round++) for (const c of conns) c.send("SAY", { text: "hi" });
    await settle(pods.map((p) => p.tr));
    assert.equal(pods.reduce((n, p) => n + p.handled(), 0), 6);
    for (const p of pods) await p.tr.close();
  });

  it("cost above capacity is ws-kit's FAILED_PRECONDITION (non-retryable)", async () => {
    const l = limiter({ capacity: 2, tokensPerSecond: 1, prefix: "big" });
    const router = createRouter<Data>().plugin(withZod());
    router.use(rateLimit({ limiter: l, key: () => "k", cost: () => 5 }));
    router.on(Say, (ctx: any) => ctx.send(Said, { text: "ok" }));
    const tr = createTestRouter<Data>({ create: () => router as any });
    const c = await tr.connect({ data: { userId: "u", ip: "1.2.3.4" } });
    c.send("SAY", { text: "x" });
    await settle([tr]);
    const errs = errorsOf(c.outgoing());
    assert.equal(errs.length, 1);
    assert.equal(errs[0].code, "FAILED_PRECONDITION");
    await tr.close();
  });

  it("a layered policy: the denying layer is named in the error the client gets, across pods", async () => {
    const mk = () => {
      const l = tollgatePolicyLimiter({
        url: server.url,
        policy: "chat",
        fields: (ctx: any) => ({ ip: ctx.data.ip, user: ctx.data.userId }),
      });
      disposers.push(() => l.dispose());
      return pod(l, l.key);
    };
    const a = mk();
    const b = mk();
    // Two users behind one IP: the user layer (3) stops bob; the ip layer (4) then stops carol.
    const bob = await a.tr.connect({ data: { userId: "bob", ip: "192.0.2.7" } });
    const carol = await b.tr.connect({ data: { userId: "carol", ip: "192.0.2.7" } });
    for (let i = 0; i < 4; i++) bob.send("SAY", { text: "hi" });
    await settle([a.tr, b.tr]);
    const bobErrors = errorsOf(bob.outgoing());
    assert.equal(a.handled(), 3);
    assert.equal(bobErrors.length, 1);
    assert.equal(bobErrors[0].code, "RESOURCE_EXHAUSTED");
    assert.equal(bobErrors[0].details.layer, "user");
    assert.equal(bobErrors[0].details.policy, "chat");
    assert.ok(!("capacity" in bobErrors[0].details));
    assert.ok(bobErrors[0].retryAfterMs > 3000 && bobErrors[0].retryAfterMs <= 4000, JSON.stringify(bobErrors[0]));
    carol.send("SAY", { text: "hi" });
    carol.send("SAY", { text: "hi" });
    await settle([a.tr, b.tr]);
    assert.equal(b.handled(), 1, "the ip layer had one token left after bob's three");
    const carolErrors = errorsOf(carol.outgoing());
    assert.equal(carolErrors.length, 1);
    assert.equal(carolErrors[0].details.layer, "ip");
    await a.tr.close();
    await b.tr.close();
  });

  it("a policy limiter used without its key function says how to use it", async () => {
    const l = tollgatePolicyLimiter({ url: server.url, policy: "chat", fields: () => ({}) });
    disposers.push(() => l.dispose());
    await assert.rejects(l.consume("user:1", 1), /key: limiter.key/);
  });

  it("server down: consume rejects as unavailable, and ws-kit does not run the handler", async () => {
    const down = await startTollgate();
    const l = tollgateRateLimiter({ url: down.url, capacity: 5, tokensPerSecond: 1, timeoutMs: 2000 });
    disposers.push(() => l.dispose());
    assert.equal((await l.consume("k", 1)).allowed, true);
    await down.stop();
    await assert.rejects(l.consume("k", 1), (e: unknown) => e instanceof TollgateRateLimitError && (e.kind === "unavailable" || e.kind === "timeout"));
    const p = pod(l);
    const c = await p.tr.connect({ data: { userId: "u", ip: "1.1.1.1" } });
    c.send("SAY", { text: "x" });
    await settle([p.tr]);
    await new Promise((r) => setTimeout(r, 300));
    await settle([p.tr]);
    assert.equal(p.handled(), 0);
    await p.tr.close();
  });
});
