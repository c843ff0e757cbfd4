// Acquire results that clean up after themselves (`await using`), per syncguard's "Resource
// Management" rules: disposal is idempotent, never throws (failures go to onReleaseError), and a
// failed acquisition disposes as a no-op.
import { LockError } from "./errors.js";
import type {
  AcquireResult,
  DecoratedAcquireResult,
  ExtendResult,
  OnReleaseError,
  ReleaseResult,
  TollgateCapabilities,
} from "./types.js";

interface Ops {
  release(opts: { lockId: string; signal?: AbortSignal }): Promise<ReleaseResult>;
  extend(opts: { lockId: string; ttlMs: number; signal?: AbortSignal }): Promise<ExtendResult>;
}

/**
 * The default onReleaseError: logs to console.error outside production (or with
 * SYNCGUARD_DEBUG=true), without the key or lockId.
 */
export const defaultOnReleaseError: OnReleaseError = (error, context) => {
  if (process.env["NODE_ENV"] === "production" && process.env["SYNCGUARD_DEBUG"] !== "true") return;
  console.error(`[tollgate/syncguard] releasing a lock on disposal failed (${context.source}): ${error.message}`);
};

export function decorate(
  ops: Ops,
  result: AcquireResult<TollgateCapabilities>,
  key: string,
  onReleaseError: OnReleaseError,
  disposeTimeoutMs: number | undefined,
): DecoratedAcquireResult<TollgateCapabilities> {
  if (!result.ok) {
    return Object.assign(result, {
      release: async (): Promise<ReleaseResult> => ({ ok: false }),
      extend: async (): Promise<ExtendResult> => ({ ok: false }),
      [Symbol.asyncDispose]: async (): Promise<void> => {},
    });
  }
  const lockId = result.lockId;
  let disposal: Promise<void> | undefined;
  let released = false;
  const dispose = async (): Promise<void> => {
    if (released) return;
    try {
      const ac = disposeTimeoutMs === undefined ? undefined : new AbortController();
      const release = ops.release(ac ? { lockId, signal: ac.signal } : { lockId });
      if (ac === undefined) {
        await release;
      } else {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            ac.abort();
            reject(new LockError("NetworkTimeout", `release on disposal took over ${disposeTimeoutMs} ms`, { lockId, key }));
          }, disposeTimeoutMs);
        });
        try {
          await Promise.race([release, timeout]);
        } finally {
          clearTimeout(timer);
        }
        release.catch(() => {});
      }
      released = true;
    } catch (e) {
      try {
        onReleaseError(e instanceof Error ? e : new Error(String(e)), { lockId, key, source: "disposal" });
      } catch {
        // A throwing callback must not make disposal throw.
      }
    }
  };
  return Object.assign(result, {
    release: async (signal?: AbortSignal): Promise<ReleaseResult> => {
      const r = await ops.release(signal ? { lockId, signal } : { lockId });
      if (r.ok) released = true;
      return r;
    },
    extend: (ttlMs: number, signal?: AbortSignal): Promise<ExtendResult> =>
      ops.extend(signal ? { lockId, ttlMs, signal } : { lockId, ttlMs }),
    [Symbol.asyncDispose]: (): Promise<void> => (disposal ??= dispose()),
  });
}
