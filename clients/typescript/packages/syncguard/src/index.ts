// @tollgate/syncguard: a syncguard LockBackend on tollgate.
export { createTollgateBackend } from "./backend.js";
export type { TollgateBackend, TollgateBackendOptions } from "./backend.js";
export {
  FENCE_THRESHOLDS,
  formatFence,
  hashKey,
  MAX_KEY_LENGTH_BYTES,
  MAX_TTL_MS,
  TIME_TOLERANCE_MS,
} from "./codec.js";
export { LockError } from "./errors.js";
export type { LockErrorCode, LockErrorConstructor, LockErrorContext } from "./errors.js";
export type * from "./types.js";
