// createTollgateBackend: a syncguard LockBackend whose locks are tollgate leases.
//
// Mapping (every operation is one command, one round trip, auto-pipelined):
//   acquire   LOCK.ACQUIRE <storage key> <ttlMs + 1000> [OWNER <key>] WITHTIMES
//   release   LOCKID.RELEASE <lock_id>
//   extend    LOCKID.EXTEND <lock_id> <ttlMs + 1000>
//   isLocked  LOCK.INFO <storage key>
//   lookup    LOCK.INFO <storage key> | LOCKID.INFO <lock_id>
// The server's lease runs TIME_TOLERANCE_MS longer than ttlMs and expiresAtMs is reported that
// much before the server's expiry: the lease is live on the server exactly while syncguard's
// isLive(expiresAtMs, now, TIME_TOLERANCE_MS) holds, with `now` the server's clock. All times are
// the tollgate server's wall clock (timeAuthority "server").
import {
  checkTimeout,
  classify,
  connect,
  fitKey,
  MAX_SERVER_KEY_BYTES,
  type ConnectionOptions,
  type Redis,
} from "@tollgate/connection";
import {
  ArgumentError,
  FENCE_THRESHOLDS,
  formatFence,
  hashKey,
  lockIdFromServer,
  lockIdToServer,
  normalizeAndValidateKey,
  TIME_TOLERANCE_MS,
  validateLockId,
  validateTtl,
} from "./codec.js";
import { decorate, defaultOnReleaseError } from "./disposable.js";
import { LockError, type LockErrorCode, type LockErrorConstructor, type LockErrorContext } from "./errors.js";
import type {
  BackendConfig,
  DecoratedAcquireResult,
  ExtendResult,
  KeyLookup,
  KeyOp,
  LockBackend,
  LockInfo,
  LockOp,
  OwnershipLookup,
  ReleaseResult,
  TollgateCapabilities,
} from "./types.js";

export interface TollgateBackendOptions extends ConnectionOptions, BackendConfig {
  /** Namespace for lock keys on the server (default "syncguard"). */
  keyPrefix?: string;
  /** Build errors with your syncguard copy's LockError class (see errors.ts). */
  lockErrorClass?: LockErrorConstructor;
  /** Called instead of console.warn when a fence passes FENCE_THRESHOLDS.WARN. */
  onFenceWarning?: (fence: string, keyHash: string) => void;
}

/** A LockBackend that can also close its connection. */
export type TollgateBackend = LockBackend<TollgateCapabilities> & {
  /** Closes the connection this backend opened (not a client you passed in). Idempotent. */
  dispose(): Promise<void>;
  /** The ioredis client in use (to share with @tollgate/ws-kit, say). */
  readonly client: Redis;
};

const RAW_DATA = Symbol.for("syncguard.rawData");

/**
 * Creates the backend. Throws LockError("InvalidArgument") for bad options (a URL that is not
 * redis://host:port, a prefix too long for any key, a bad timeoutMs). Connecting happens in the
 * background; the first operations wait for it up to timeoutMs.
 */
export function createTollgateBackend(options: TollgateBackendOptions = {}): TollgateBackend {
  const Err: LockErrorConstructor = options.lockErrorClass ?? LockError;
  const fail = (code: LockErrorCode, message: string, context?: LockErrorContext): Error =>
    new Err(code, message, context);
  const prefix = options.keyPrefix ?? "syncguard";
  let conn: ReturnType<typeof connect>;
  try {
    if (typeof prefix !== "string") throw new TypeError("keyPrefix must be a string");
    fitKey(prefix, "x", MAX_SERVER_KEY_BYTES);
    conn = connect(options, "tollgate-syncguard");
  } catch (e) {
    throw fail("InvalidArgument", (e as Error).message);
  }
  const redis = conn.redis;
  const onReleaseError = options.onReleaseError ?? defaultOnReleaseError;
  let disposeTimeoutMs: number | undefined;
  try {
    disposeTimeoutMs = options.disposeTimeoutMs === undefined ? undefined : checkTimeout("disposeTimeoutMs", options.disposeTimeoutMs, 0);
  } catch (e) {
    void conn.close();
    throw fail("InvalidArgument", (e as Error).message);
  }
  const strippedPrefix = prefix.replace(/:+$/, "");
  const ownPrefix = strippedPrefix === "" ? "" : `${strippedPrefix}:`;
  const capabilities: Readonly<TollgateCapabilities> = Object.freeze({
    backend: "tollgate",
    supportsFencing: true,
    timeAuthority: "server",
  });

  // Runs one operation: argument errors become InvalidArgument, server and transport failures
  // the matching LockError code; LockErrors pass through.
  async function run<T>(ctx: LockErrorContext, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    if (signal?.aborted) throw fail("Aborted", "Operation aborted by signal", ctx);
    try {
      return await fn();
    } catch (e) {
      if (e instanceof Err || e instanceof LockError) throw e;
      if (e instanceof ArgumentError) throw fail("InvalidArgument", e.message, ctx);
      const c = classify(e);
      const code: LockErrorCode =
        c.kind === "unavailable"
          ? "ServiceUnavailable"
          : c.kind === "timeout"
            ? "NetworkTimeout"
            : c.kind === "auth"
              ? "AuthFailed"
              : c.kind === "invalid"
                ? "InvalidArgument"
                : "Internal";
      throw fail(code, `tollgate: ${c.message}`, { ...ctx, cause: e });
    }
  }

  function storageKeyOf(normalizedKey: string): string {
    return fitKey(prefix, normalizedKey, MAX_SERVER_KEY_BYTES);
  }

  // The user key a lease stands for: its OWNER label (set when the key was hashed to fit) or the
  // storage key without our prefix; null when the lease is not in our namespace.
  function userKeyOf(storageKey: string, owner: string | null): string | null {
    if (!storageKey.startsWith(ownPrefix)) return null;
    return owner ?? storageKey.slice(ownPrefix.length);
  }

  function checkFence(n: number, keyHash: string): string {
    const fence = formatFence(n);
    if (fence > FENCE_THRESHOLDS.MAX) {
      throw fail("Internal", `fence ${fence} is above the limit ${FENCE_THRESHOLDS.MAX} (ADR-004)`);
    }
    if (fence > FENCE_THRESHOLDS.WARN) {
      if (options.onFenceWarning) options.onFenceWarning(fence, keyHash);
      else console.warn(`[tollgate/syncguard] fence ${fence} is approaching the limit ${FENCE_THRESHOLDS.MAX} (key hash ${keyHash})`);
    }
    return fence;
  }

  async function release(opts: LockOp): Promise<ReleaseResult> {
    const lockId = opts?.lockId;
    return run({ lockId }, opts?.signal, async () => {
      validateLockId(lockId);
      const id = lockIdToServer(lockId);
      if (id === null) return { ok: false };
      const n = await redis.call("LOCKID.RELEASE", id);
      return n === 1 ? { ok: true } : { ok: false };
    });
  }

  async function extend(opts: LockOp & { ttlMs: number }): Promise<ExtendResult> {
    const lockId = opts?.lockId;
    return run({ lockId }, opts?.signal, async () => {
      validateLockId(lockId);
      const ttl = validateTtl(opts.ttlMs);
      const id = lockIdToServer(lockId);
      if (id === null) return { ok: false };
      const exp = Number(await redis.call("LOCKID.EXTEND", id, String(ttl + TIME_TOLERANCE_MS)));
      return exp > 0 ? { ok: true, expiresAtMs: exp - TIME_TOLERANCE_MS } : { ok: false };
    });
  }

  async function acquire(opts: KeyOp & { ttlMs: number }): Promise<DecoratedAcquireResult<TollgateCapabilities>> {
    const key = opts?.key;
    const result = await run({ key }, opts?.signal, async () => {
      const k = normalizeAndValidateKey(key);
      const ttl = validateTtl(opts.ttlMs);
      const sk = storageKeyOf(k);
      const args = [sk, String(ttl + TIME_TOLERANCE_MS)];
      if (sk !== ownPrefix + k) args.push("OWNER", k);
      args.push("WITHTIMES");
      const r = (await redis.call("LOCK.ACQUIRE", ...args)) as [string, number, number, number, number] | null;
      if (r === null) return { ok: false as const, reason: "locked" as const };
      const lockId = lockIdFromServer(r[0]);
      let fence: string;
      try {
        fence = checkFence(Number(r[1]), hashKey(k));
      } catch (e) {
        // Never leave a lease nobody can use: give it back before refusing it.
        await redis.call("LOCK.RELEASE", sk, r[0]).catch(() => {});
        throw e;
      }
      return { ok: true as const, lockId, expiresAtMs: Number(r[4]) - TIME_TOLERANCE_MS, fence };
    });
    return decorate({ release, extend }, result, String(key), onReleaseError, disposeTimeoutMs);
  }

  async function isLocked(opts: KeyOp): Promise<boolean> {
    const key = opts?.key;
    return run({ key }, opts?.signal, async () => {
      const sk = storageKeyOf(normalizeAndValidateKey(key));
      return (await redis.call("LOCK.INFO", sk)) !== null;
    });
  }

  async function lookup(opts: KeyLookup | OwnershipLookup): Promise<LockInfo<TollgateCapabilities> | null> {
    if (opts !== null && typeof opts === "object" && "key" in opts) {
      const key = opts.key;
      return run({ key }, opts.signal, async () => {
        const k = normalizeAndValidateKey(key);
        const m = fields(await redis.call("LOCK.INFO", storageKeyOf(k)));
        if (m === null) return null;
        // The server never reveals another holder's lock id, only its digest; the raw lockId is
        // therefore not attached (syncguard's getByKeyRaw shows its placeholder for it).
        return info(hashKey(k), m);
      });
    }
    const lockId = (opts as OwnershipLookup | undefined)?.lockId;
    return run({ lockId }, opts?.signal, async () => {
      const valid = validateLockId(lockId);
      const id = lockIdToServer(valid);
      if (id === null) return null;
      const m = fields(await redis.call("LOCKID.INFO", id));
      if (m === null) return null;
      const userKey = userKeyOf(String(m.get("key")), m.get("owner") ?? null);
      if (userKey === null) return null;
      const out = info(hashKey(userKey), m);
      Object.defineProperty(out, RAW_DATA, { value: { key: userKey, lockId: valid }, enumerable: false });
      return out;
    });
  }

  function info(keyHash: string, m: Map<string, string | null>): LockInfo<TollgateCapabilities> {
    const expires = Number(m.get("expires_at_ms"));
    const acquiredRaw = m.get("acquired_at_ms");
    return {
      keyHash,
      lockIdHash: String(m.get("lock_id_hash")),
      expiresAtMs: expires - TIME_TOLERANCE_MS,
      // Only a lease granted by a tollgate older than LOCK.INFO's acquired_at_ms lacks it.
      acquiredAtMs: acquiredRaw == null ? Number.NaN : Number(acquiredRaw),
      fence: checkFence(Number(m.get("fence")), keyHash),
    };
  }

  const backend = {
    acquire,
    release,
    extend,
    isLocked,
    lookup: lookup as LockBackend<TollgateCapabilities>["lookup"],
    capabilities,
    client: redis,
    dispose: () => conn.close(),
  };
  return backend;
}

// A RESP2 field/value array (or nil) as a map.
function fields(reply: unknown): Map<string, string | null> | null {
  if (reply === null) return null;
  if (!Array.isArray(reply)) throw new Error("tollgate sent an unexpected reply to an INFO command");
  const m = new Map<string, string | null>();
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const v = reply[i + 1];
    m.set(String(reply[i]), v === null ? null : String(v));
  }
  return m;
}
