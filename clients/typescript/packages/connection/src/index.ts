// The connection to a tollgate server shared by @tollgate/syncguard and @tollgate/ws-kit: one
// definition of the URL rules, the password lookup, the client options (auto-pipelining, timeouts,
// fail-fast while disconnected), the key-fitting rule and the error classification.
//
// The client is ioredis: tollgate speaks RESP, ioredis is the most used maintained Redis client for
// Node (syncguard's own Redis backend takes one, so its users already have it), it pipelines
// automatically (every command issued in one event-loop tick goes out in one write), and it
// reconnects by itself.
import { createHash } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";

export { Redis };

/** Options common to every tollgate-backed object. */
export interface ConnectionOptions {
  /** `redis://[:password@]host:port` (also `rediss://` for TLS). Default `redis://127.0.0.1:7379`. */
  url?: string;
  /** Password for AUTH; overrides one in the URL. Default: the `TOLLGATE_PASSWORD` env variable. */
  password?: string;
  /** An existing ioredis client to use instead of connecting; it is not closed by dispose. */
  client?: Redis;
  /** Per-command timeout in ms (default 5000): a command without a reply by then fails. */
  timeoutMs?: number;
}

/** A client and whether we own it (and so close it on dispose). */
export interface Connection {
  readonly redis: Redis;
  readonly owned: boolean;
  /** Closes the client if this connection opened it. Idempotent. */
  close(): Promise<void>;
}

/** Where a failure belongs: what the caller should do about it. */
export type FailureKind =
  | "unavailable" // server or its backend unreachable, connection lost: retry later
  | "timeout" // no reply within timeoutMs: the command may or may not have been applied
  | "auth" // password missing or refused
  | "invalid" // the server refused an argument
  | "internal"; // anything else

export interface ClassifiedFailure {
  kind: FailureKind;
  /** A message safe to show and log: it never contains the password or the URL's credentials. */
  message: string;
}

const DEFAULT_URL = "redis://127.0.0.1:7379";
export const DEFAULT_TIMEOUT_MS = 5000;

/** Throws TypeError for an unusable URL (the message never echoes a password). */
export function parseUrl(url: string): { host: string; port: number; tls: boolean; password?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`url must look like redis://[:password@]host:port, got ${redact(url)}`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new TypeError(`url scheme must be redis:// or rediss://, got ${u.protocol}//`);
  }
  const port = u.port === "" ? 7379 : Number(u.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`url port must be an integer in [1, 65535], got ${u.port}`);
  }
  if (u.hostname === "") throw new TypeError("url must name a host");
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  const out: { host: string; port: number; tls: boolean; password?: string } = {
    host,
    port,
    tls: u.protocol === "rediss:",
  };
  if (u.password !== "") out.password = decodeURIComponent(u.password);
  return out;
}

/** The URL with any credentials replaced by "***". */
export function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, "//***@");
}

/** Validates a timeout in ms: an integer in [1, 86400000]. */
export function checkTimeout(name: string, v: number | undefined, def: number): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < 1 || v > 86_400_000) {
    throw new TypeError(`${name} must be an integer number of ms in [1, 86400000], got ${String(v)}`);
  }
  return v;
}

/**
 * Opens (or adopts) a client. Throws TypeError for bad options. Connecting is lazy-fast: commands
 * issued before the connection is up wait for it (up to timeoutMs), and while the server is down
 * they fail at once instead of queueing without bound.
 */
export function connect(opts: ConnectionOptions, name: string): Connection {
  const timeoutMs = checkTimeout("timeoutMs", opts.timeoutMs, DEFAULT_TIMEOUT_MS);
  if (opts.client !== undefined) {
    if (opts.url !== undefined) throw new TypeError("give either url or client, not both");
    return { redis: opts.client, owned: false, close: async () => {} };
  }
  const { host, port, tls, password: urlPassword } = parseUrl(opts.url ?? DEFAULT_URL);
  const password = opts.password ?? urlPassword ?? process.env["TOLLGATE_PASSWORD"];
  const ro: RedisOptions = {
    host,
    port,
    connectionName: name,
    enableAutoPipelining: true,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    // Fail fast while disconnected: a command is retried at most once after a reconnect, and
    // commands are not queued while the client knows it is offline after the first connect.
    maxRetriesPerRequest: 1,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    enableReadyCheck: false,
    lazyConnect: false,
  };
  if (password !== undefined && password !== "") ro.password = password;
  if (tls) ro.tls = {};
  const redis = new Redis(ro);
  // Connection errors surface on the commands that fail; without a listener ioredis would print
  // every reconnect attempt's error.
  redis.on("error", () => {});
  let closed = false;
  return {
    redis,
    owned: true,
    close: async () => {
      if (closed) return;
      closed = true;
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
    },
  };
}

/** Sorts an error from ioredis (or the server) into a FailureKind with a safe message. */
export function classify(err: unknown): ClassifiedFailure {
  const e = err as { name?: string; message?: string; code?: string } | undefined;
  const raw = String(e?.message ?? err);
  const message = scrub(raw);
  const name = e?.name ?? "";
  const code = e?.code ?? "";
  if (/Command timed out/i.test(raw) || code === "ETIMEDOUT") return { kind: "timeout", message };
  if (/^(NOAUTH|WRONGPASS)\b/.test(raw) || /invalid password|Authentication required/i.test(raw)) {
    return { kind: "auth", message };
  }
  if (
    name === "MaxRetriesPerRequestError" ||
    /^UNAVAILABLE\b|^LOADING\b|^BUSY\b|^TRYAGAIN\b/.test(raw) ||
    /Connection is closed|Stream isn't writeable|connect ECONNREFUSED|ECONNRESET|EPIPE|ENOTFOUND|EHOSTUNREACH|ECONNABORTED|enableOfflineQueue/i.test(
      raw,
    ) ||
    ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTFOUND", "EHOSTUNREACH"].includes(code)
  ) {
    return { kind: "unavailable", message };
  }
  // A server whose backend lacks a feature (lookup by lock_id on a Redis Cluster) is not a bad
  // argument of the caller's.
  if (/^ERR\b.*cannot look leases up/.test(raw)) return { kind: "internal", message };
  if (/^ERR\b.*(must|expected|unknown|invalid|not an integer|wrong number)/i.test(raw)) {
    return { kind: "invalid", message };
  }
  return { kind: "internal", message };
}

// Drops anything that looks like credentials from an error text.
function scrub(s: string): string {
  return redact(s).replace(/(AUTH|password)\s+\S+/gi, "$1 ***");
}

const encoder = new TextEncoder();

/**
 * Fits `prefix:key` into `limitBytes` UTF-8 bytes (tollgate keys: 512): the key is NFC-normalised;
 * when `prefix:key` is too long it becomes `prefix:` + base64url of the first 16 bytes of the
 * SHA-256 of `prefix:key` (syncguard's storage-key rule, so a key maps to the same storage key
 * here as in syncguard's backends). A prefix's trailing colons are dropped. Throws RangeError when
 * no key fits (the prefix itself is too long).
 */
export function fitKey(prefix: string, key: string, limitBytes: number, reserveBytes = 0): string {
  const k = key.normalize("NFC");
  let p = prefix;
  while (p.endsWith(":")) p = p.slice(0, -1);
  const sep = p === "" ? 0 : 1;
  if (encoder.encode(p).byteLength + sep + reserveBytes > limitBytes) {
    throw new RangeError(`prefix is too long: prefix and reserve must stay under ${limitBytes} bytes`);
  }
  const full = p === "" ? k : `${p}:${k}`;
  const bytes = encoder.encode(full);
  if (bytes.byteLength + reserveBytes <= limitBytes) return full;
  const digest = createHash("sha256").update(bytes).digest().subarray(0, 16).toString("base64url");
  const hashed = p === "" ? digest : `${p}:${digest}`;
  if (encoder.encode(hashed).byteLength + reserveBytes > limitBytes) {
    throw new RangeError(`prefix is too long: even a hashed key exceeds ${limitBytes} bytes`);
  }
  return hashed;
}

/** tollgate's longest key in bytes. */
export const MAX_SERVER_KEY_BYTES = 512;

/**
 * Formats a positive finite number the way tollgate's THROTTLE and RATE.CHECK read decimals (at
 * most 9 decimal places, no exponent). Throws RangeError naming `name` otherwise.
 */
export function decimalArg(name: string, v: number, max: number): string {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > max) {
    throw new RangeError(`${name} must be a positive number at most ${max}, got ${String(v)}`);
  }
  const s = v.toFixed(9).replace(/\.?0+$/, "");
  if (Number(s) !== v) {
    throw new RangeError(`${name} must have at most 9 decimal places, got ${String(v)}`);
  }
  return s;
}
