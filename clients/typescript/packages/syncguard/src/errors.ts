// syncguard's error contract: every system failure is a LockError with one of these codes.

export type LockErrorCode =
  | "ServiceUnavailable" // server (or its backend) unreachable, connection lost
  | "AuthFailed" // password missing or refused
  | "InvalidArgument" // bad key, lockId, ttlMs or configuration
  | "RateLimited" // never raised by this backend (tollgate does not rate-limit lock calls)
  | "NetworkTimeout" // no reply within timeoutMs
  | "AcquisitionTimeout" // raised only by syncguard's lock() helper
  | "Aborted" // the caller's AbortSignal fired before the command was sent
  | "Internal"; // anything else, including fence overflow

export interface LockErrorContext {
  key?: string;
  lockId?: string;
  cause?: unknown;
}

/** Same shape as syncguard's LockError: `code`, `message`, `context`, name "LockError". */
export class LockError extends Error {
  constructor(
    public code: LockErrorCode,
    message?: string,
    public context?: LockErrorContext,
  ) {
    super(message ?? code);
    this.name = "LockError";
  }
}

/**
 * How errors are built: this package's LockError by default, or the constructor of the LockError
 * class your syncguard copy exports (option `lockErrorClass`), so that `instanceof LockError` and
 * syncguard's lock() helper (which passes its own LockErrors through untouched) see theirs.
 */
export type LockErrorConstructor = new (
  code: LockErrorCode,
  message?: string,
  context?: LockErrorContext,
) => Error;
