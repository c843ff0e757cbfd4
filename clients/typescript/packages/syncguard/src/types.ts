// syncguard's public types, declared here so that this package needs no syncguard install (it is
// not on npm). Written from syncguard's interface specification (docs/specs/interface.md) and kept
// structurally identical to its common/types.ts: a value of these types is accepted wherever
// syncguard's types are expected, and the other way round.

/** Backend capability declaration. */
export interface BackendCapabilities {
  /** Whether the backend issues monotonic fence tokens. */
  supportsFencing: boolean;
  /** Whose clock times come from. */
  timeAuthority: "server" | "client";
}

/** tollgate: fences always, times from the tollgate server's clock. */
export interface TollgateCapabilities extends BackendCapabilities {
  backend: "tollgate";
  supportsFencing: true;
  timeAuthority: "server";
}

export type KeyOp = Readonly<{ key: string; signal?: AbortSignal }>;
export type LockOp = Readonly<{ lockId: string; signal?: AbortSignal }>;
export type KeyLookup = { key: string; signal?: AbortSignal };
export type OwnershipLookup = { lockId: string; signal?: AbortSignal };

/** 15-digit zero-padded decimal string: compare with < and >, never parse (ADR-004). */
export type Fence = string;
/** 24 lowercase hex characters (a 96-bit non-cryptographic digest, for logs). */
export type HashId = string;

export type AcquireOk<C extends BackendCapabilities> = {
  ok: true;
  lockId: string;
  expiresAtMs: number;
} & (C["supportsFencing"] extends true ? { fence: Fence } : {});

export type AcquireResult<C extends BackendCapabilities> =
  | AcquireOk<C>
  | { ok: false; reason: "locked" };

export type DecoratedAcquireResult<C extends BackendCapabilities> =
  | (AcquireOk<C> & {
      release(signal?: AbortSignal): Promise<ReleaseResult>;
      extend(ttlMs: number, signal?: AbortSignal): Promise<ExtendResult>;
      [Symbol.asyncDispose](): Promise<void>;
    })
  | ({ ok: false; reason: "locked" } & {
      release(): Promise<ReleaseResult>;
      extend(ttlMs: number): Promise<ExtendResult>;
      [Symbol.asyncDispose](): Promise<void>;
    });

export type ReleaseResult = { ok: true } | { ok: false };
export type ExtendResult = { ok: true; expiresAtMs: number } | { ok: false };

export type LockInfo<C extends BackendCapabilities> = {
  keyHash: HashId;
  lockIdHash: HashId;
  expiresAtMs: number;
  acquiredAtMs: number;
} & (C["supportsFencing"] extends true ? { fence: Fence } : {});

export type LockInfoDebug<C extends BackendCapabilities> = LockInfo<C> & {
  key: string;
  lockId: string;
};

export type OnReleaseError = (
  error: Error,
  context: { lockId: string; key: string; source: "disposal" },
) => void;

export interface BackendConfig {
  onReleaseError?: OnReleaseError;
  disposeTimeoutMs?: number;
}

export interface LockBackend<C extends BackendCapabilities = BackendCapabilities> {
  acquire: (opts: KeyOp & { ttlMs: number }) => Promise<DecoratedAcquireResult<C>>;
  release: (opts: LockOp) => Promise<ReleaseResult>;
  extend: (opts: LockOp & { ttlMs: number }) => Promise<ExtendResult>;
  isLocked: (opts: KeyOp) => Promise<boolean>;
  lookup(opts: KeyLookup): Promise<LockInfo<C> | null>;
  lookup(opts: OwnershipLookup): Promise<LockInfo<C> | null>;
  readonly capabilities: Readonly<C>;
}
