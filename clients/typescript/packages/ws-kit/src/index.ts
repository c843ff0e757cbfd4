// @tollgate/ws-kit: @ws-kit/rate-limit adapters on tollgate.
//
//  - tollgateRateLimiter: one token bucket per key on THROTTLE (exact decimal arithmetic, so
//    fractional capacities and rates such as 0.5 token/s work as written);
//  - tollgatePolicyLimiter: a layered policy from the server's policy file on RATE.CHECK (every
//    layer checked all-or-nothing; the denying layer is named in the error the client gets).
// Both keep their buckets on the tollgate server, so every pod (router instance) that talks to
// the same server shares one limit.
import {
  classify,
  connect,
  decimalArg,
  fitKey,
  MAX_SERVER_KEY_BYTES,
  type ConnectionOptions,
  type Redis,
} from "@tollgate/connection";
import type { RateLimitDecision, RateLimiter, RateLimitPolicy } from "@ws-kit/rate-limit";

/** tollgate's accepted ranges (README "Rate limiting"). */
const MAX_CAPACITY = 10_000_000_000;
const MAX_RATE = 1_000_000_000;

/** Thrown by consume() when tollgate cannot decide; ws-kit turns it into an INTERNAL error. */
export class TollgateRateLimitError extends Error {
  constructor(
    readonly kind: "unavailable" | "timeout" | "auth" | "invalid" | "internal",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TollgateRateLimitError";
  }
}

function wrap(e: unknown): TollgateRateLimitError {
  if (e instanceof TollgateRateLimitError) return e;
  const c = classify(e);
  return new TollgateRateLimitError(c.kind, `tollgate: ${c.message}`, { cause: e });
}

function checkCost(cost: number): string {
  try {
    return decimalArg("cost", cost, MAX_CAPACITY);
  } catch (e) {
    throw new TollgateRateLimitError("invalid", (e as Error).message);
  }
}

// THROTTLE's and RATE.CHECK's retry_after_ms: -1 means "never" (the cost exceeds a capacity).
function retryOf(v: unknown): number | null {
  const n = Number(v);
  return n < 0 ? null : n;
}

export interface TollgateRateLimiterOptions extends ConnectionOptions {
  /** Bucket size in tokens: a positive number (decimals allowed, up to 9 places). */
  capacity: number;
  /** Refill rate in tokens per second: a positive number (0.5 = one token every 2 s). */
  tokensPerSecond: number;
  /** Prepended (with ":") to every key; isolates policies sharing one server. */
  prefix?: string;
}

/** A RateLimiter whose close() is dispose(). */
export type TollgateRateLimiter = Omit<RateLimiter, "dispose"> & {
  dispose(): Promise<void>;
  readonly client: Redis;
};

/**
 * A token bucket per key on the tollgate server (THROTTLE). Throws RangeError/TypeError for a bad
 * policy or URL, naming the option and its range.
 *
 * consume(key, cost) → `{allowed: true, remaining}` or `{allowed: false, remaining, retryAfterMs}`
 * with retryAfterMs null exactly when cost > capacity (no wait would ever allow it). remaining is
 * the whole tokens left. Rejects with TollgateRateLimitError when the server cannot be reached or
 * times out: ws-kit then answers the message with an error, never lets it through.
 */
export function tollgateRateLimiter(options: TollgateRateLimiterOptions): TollgateRateLimiter {
  const capacityArg = decimalArg("capacity", options?.capacity, MAX_CAPACITY);
  const rateArg = decimalArg("tokensPerSecond", options.tokensPerSecond, MAX_RATE);
  const prefix = options.prefix;
  if (prefix !== undefined && typeof prefix !== "string") throw new TypeError("prefix must be a string");
  fitKey(prefix ?? "", "x", MAX_SERVER_KEY_BYTES);
  const conn = connect(options, "tollgate-ws-kit");
  const policy: RateLimitPolicy = Object.freeze({
    capacity: options.capacity,
    tokensPerSecond: options.tokensPerSecond,
    ...(prefix !== undefined ? { prefix } : {}),
  });
  const capacity = options.capacity;

  return {
    client: conn.redis,
    getPolicy: () => policy,
    dispose: () => conn.close(),
    async consume(key: string, cost: number): Promise<RateLimitDecision> {
      const costArg = checkCost(cost);
      if (typeof key !== "string" || key === "") {
        throw new TollgateRateLimitError("invalid", "key must be a non-empty string");
      }
      let r: [number, number, number, number];
      try {
        r = (await conn.redis.call(
          "THROTTLE",
          fitKey(prefix ?? "", key, MAX_SERVER_KEY_BYTES),
          capacityArg,
          rateArg,
          "COST",
          costArg,
        )) as [number, number, number, number];
      } catch (e) {
        throw wrap(e);
      }
      const remaining = Number(r[1]);
      if (Number(r[0]) === 1) return { allowed: true, remaining };
      // The server says "never" exactly when cost > capacity; derive it from the policy too so the
      // contract holds even against a server that rounds differently.
      const retryAfterMs = cost > capacity ? null : (retryOf(r[2]) ?? 0);
      return { allowed: false, remaining, retryAfterMs };
    },
  };
}

/** The fields a message brings to a policy's key templates (`{ip}`, `{user}`, ...). */
export type PolicyFields = Record<string, string | number>;

export interface TollgatePolicyLimiterOptions<Ctx> extends ConnectionOptions {
  /** The policy's name in the server's policy file (`tollgate serve --config`). */
  policy: string;
  /** The fields for RATE.CHECK, from the message context: names are lowercase identifiers. */
  fields: (ctx: Ctx) => PolicyFields;
  /**
   * What getPolicy() reports (ws-kit puts `capacity` in its error details). A layered policy has
   * no single capacity; by default the error details carry the denying layer instead.
   */
  reportAs?: { capacity: number; tokensPerSecond: number };
}

/** A RateLimiter for a layered policy; pass `key: limiter.key` to rateLimit(). */
export type TollgatePolicyLimiter<Ctx> = Omit<RateLimiter, "dispose"> & {
  /** rateLimit()'s key option: hands the message context to consume(). */
  key: (ctx: Ctx) => string;
  dispose(): Promise<void>;
  readonly client: Redis;
};

const FIELD_RE = /^[a-z][a-z0-9_]*$/;
const POLICY_KEY_PREFIX = "tollgate-policy#";

/**
 * A layered policy (RATE.CHECK): every enforced layer is checked and charged all-or-nothing on the
 * server. Use it through ws-kit's own middleware:
 *
 *   const limiter = tollgatePolicyLimiter({ url, policy: "chat", fields: (ctx) => ({ ip: ctx.data.ip, user: ctx.data.userId }) });
 *   router.use(rateLimit({ limiter, key: limiter.key, cost: (ctx) => 1 }));
 *
 * When a layer denies, the error ws-kit sends carries `layer` (the denying layer's name) and
 * `policy` in its details, next to ws-kit's own cost/remaining and the retryAfterMs hint.
 * retryAfterMs is null exactly when the cost exceeds the capacity of an enforced layer.
 */
export function tollgatePolicyLimiter<Ctx extends { error: (...a: any[]) => void }>(
  options: TollgatePolicyLimiterOptions<Ctx>,
): TollgatePolicyLimiter<Ctx> {
  const policyName = options?.policy;
  if (typeof policyName !== "string" || policyName === "") throw new TypeError("policy must be a non-empty string");
  if (typeof options.fields !== "function") throw new TypeError("fields must be a function of the message context");
  if (options.reportAs) {
    decimalArg("reportAs.capacity", options.reportAs.capacity, MAX_CAPACITY);
    decimalArg("reportAs.tokensPerSecond", options.reportAs.tokensPerSecond, MAX_RATE);
  }
  const conn = connect(options, "tollgate-ws-kit");
  const policy: RateLimitPolicy = Object.freeze({
    capacity: options.reportAs?.capacity ?? Number.POSITIVE_INFINITY,
    tokensPerSecond: options.reportAs?.tokensPerSecond ?? Number.POSITIVE_INFINITY,
    prefix: policyName,
  });
  // key(ctx) parks the context here under a fresh token; consume(token) takes it back. rateLimit()
  // calls consume right after key, so entries live for one await at most.
  const pending = new Map<string, Ctx>();
  let seq = 0;

  return {
    client: conn.redis,
    getPolicy: () => policy,
    dispose: () => conn.close(),
    key(ctx: Ctx): string {
      const token = `${POLICY_KEY_PREFIX}${++seq}`;
      pending.set(token, ctx);
      return token;
    },
    async consume(key: string, cost: number): Promise<RateLimitDecision> {
      const ctx = pending.get(key);
      pending.delete(key);
      if (ctx === undefined) {
        throw new TollgateRateLimitError("invalid", "tollgatePolicyLimiter needs rateLimit({ limiter, key: limiter.key })");
      }
      const costArg = checkCost(cost);
      const args: string[] = [policyName, "COST", costArg];
      for (const [name, value] of Object.entries(options.fields(ctx))) {
        if (!FIELD_RE.test(name)) {
          throw new TollgateRateLimitError("invalid", `field name ${JSON.stringify(name)} must be a lowercase identifier`);
        }
        args.push(name, String(value));
      }
      let r: [number, string | null, number, number];
      try {
        r = (await conn.redis.call("RATE.CHECK", ...args)) as [number, string | null, number, number];
      } catch (e) {
        throw wrap(e);
      }
      const remaining = Number(r[2]);
      if (Number(r[0]) === 1) return { allowed: true, remaining };
      const layer = r[1] === null ? null : String(r[1]);
      nameLayerInError(ctx, policyName, layer, options.reportAs === undefined);
      return { allowed: false, remaining, retryAfterMs: retryOf(r[3]) };
    },
  };
}

// ws-kit's rateLimit() reports a denial by calling ctx.error(code, message, details, opts) right
// after consume() resolves. Wrapping this message's ctx.error once adds the denying layer (and
// drops the meaningless single capacity of a layered policy) to the details the client receives.
function nameLayerInError(
  ctx: { error: (...a: any[]) => void },
  policy: string,
  layer: string | null,
  dropCapacity: boolean,
): void {
  const original = ctx.error;
  ctx.error = function (code: string, message?: string, details?: Record<string, unknown>, opts?: unknown) {
    ctx.error = original;
    const d: Record<string, unknown> = { ...(details ?? {}), policy, layer };
    if (dropCapacity) delete d["capacity"];
    return original.call(this, code, message, d, opts);
  };
}
