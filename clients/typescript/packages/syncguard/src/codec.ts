// Identifiers, fences and validation: syncguard's rules (docs/specs/interface.md, ADR-004,
// ADR-006), written for tollgate's wire formats.
import type { Fence, HashId } from "./types.js";

/** User keys: at most this many UTF-8 bytes after NFC normalisation (syncguard's limit). */
export const MAX_KEY_LENGTH_BYTES = 512;
/** syncguard's liveness tolerance: a lock is live while expiresAtMs > now - TIME_TOLERANCE_MS. */
export const TIME_TOLERANCE_MS = 1000;
/** tollgate's longest lease (86400000 ms) minus the tolerance the server adds. */
export const MAX_TTL_MS = 86_400_000 - TIME_TOLERANCE_MS;
/** ADR-004's thresholds: above MAX a fence is refused (Internal), above WARN it is logged. */
export const FENCE_THRESHOLDS = { MAX: "900000000000000", WARN: "090000000000000" } as const;

const LOCK_ID_RE = /^[A-Za-z0-9_-]{22}$/;
const HEX_ID_RE = /^[0-9a-f]{32}$/;
const encoder = new TextEncoder();

/** Why a value was refused: the caller turns it into LockError("InvalidArgument"). */
export class ArgumentError extends Error {}

/** NFC-normalises a key and checks 1..512 UTF-8 bytes. */
export function normalizeAndValidateKey(key: unknown): string {
  if (typeof key !== "string") throw new ArgumentError("Key must be a string");
  if (key.length === 0) throw new ArgumentError("Key must not be empty");
  const k = key.normalize("NFC");
  const n = encoder.encode(k).byteLength;
  if (n > MAX_KEY_LENGTH_BYTES) {
    throw new ArgumentError(
      `Key exceeds maximum length of ${MAX_KEY_LENGTH_BYTES} bytes after NFC normalization (got ${n} bytes)`,
    );
  }
  return k;
}

/** syncguard's lockId format: exactly 22 base64url characters. */
export function validateLockId(lockId: unknown): string {
  if (typeof lockId !== "string" || !LOCK_ID_RE.test(lockId)) {
    throw new ArgumentError("Invalid lockId format: expected exactly 22 base64url characters ([A-Za-z0-9_-])");
  }
  return lockId;
}

/** ttlMs: a positive integer no larger than MAX_TTL_MS. */
export function validateTtl(ttlMs: unknown): number {
  if (typeof ttlMs !== "number" || !Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_TTL_MS) {
    throw new ArgumentError(`ttlMs must be an integer in [1, ${MAX_TTL_MS}], got ${String(ttlMs)}`);
  }
  return ttlMs;
}

/** tollgate's lock_id (32 lowercase hex = 16 CSPRNG bytes) as syncguard's 22-char base64url. */
export function lockIdFromServer(hex: string): string {
  if (!HEX_ID_RE.test(hex)) throw new Error("server sent a malformed lock_id");
  return Buffer.from(hex, "hex").toString("base64url");
}

/**
 * The server's lock_id for a syncguard lockId, or null when the lockId cannot be one the server
 * issued (22 base64url characters carry 132 bits; only the encoding of 16 bytes is canonical, so
 * "…A" and "…B" never alias the same lease).
 */
export function lockIdToServer(lockId: string): string | null {
  const bytes = Buffer.from(lockId, "base64url");
  if (bytes.length !== 16 || bytes.toString("base64url") !== lockId) return null;
  return bytes.toString("hex");
}

/**
 * syncguard's sanitised identifier: three 32-bit rolling hashes (multipliers 31, 127, 2047 with
 * the UTF-16 code unit weighted 1, 3, 7) of the NFC form, as 24 lowercase hex characters.
 * Non-cryptographic: for logs and dashboards only. The server computes the same digest of a lock
 * id's base64url form (LOCK.INFO's lock_id_hash), so both sides agree.
 */
export function hashKey(value: string): HashId {
  const s = value.normalize("NFC");
  let a = 0;
  let b = 0;
  let c = 0;
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    a = (Math.imul(a, 31) + u) | 0;
    b = (Math.imul(b, 127) + u * 3) | 0;
    c = (Math.imul(c, 2047) + u * 7) | 0;
  }
  const hex = (x: number) => (x >>> 0).toString(16).padStart(8, "0");
  return hex(a) + hex(b) + hex(c);
}

/** A fence as 15 zero-padded digits; throws for a value outside [0, 10^15). */
export function formatFence(n: number): Fence {
  if (!Number.isSafeInteger(n) || n < 0 || n > 999_999_999_999_999) {
    throw new RangeError(`fence ${String(n)} does not fit 15 digits`);
  }
  return String(n).padStart(15, "0");
}
