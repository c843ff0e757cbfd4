-- tollgate's PostgreSQL schema: what `tollgate migrate` (MigratePostgres) runs, in one transaction.
-- Embedded into the library at build time (CMakeLists.txt here). Every object is created
-- idempotently (IF NOT EXISTS / CREATE OR REPLACE), so running this on any older schema upgrades
-- it; MigratePostgres appends the statement recording the schema version, and COMMIT.
--
-- Units. Leases and permits: server time (now()), microsecond resolution. The one exception is a
-- lease's acquisition time (acquired_at_ns, schema version 4): Unix nanoseconds of the tollgate
-- process's wall clock at the grant, passed in by the caller, so every backend reports the same
-- time authority (the tollgate process) and not the database's clock. Buckets: a bucket's debt
-- (tokens consumed and not yet refilled) is an integer count of 1e-18 tokens, exactly the core's
-- unit, so with nano-token capacities, rates and costs every step is integer `numeric` arithmetic:
-- no rounding anywhere. Elapsed time is whole microseconds of now(); a rate of r nano-tokens/s
-- refills r * 1000 debt units per microsecond.
--
-- Why now() and not clock_timestamp(): now() is fixed for the transaction, so every bucket of one
-- CheckLayers call is evaluated at one instant (as the core does), and each call is its own
-- transaction, so now() is the moment the call started. A transaction that waited for a row lock
-- may carry an older now() than the row's last update; that (and a server clock stepping back)
-- counts as zero elapsed time: debts never shrink for it and stored times never go back. For
-- leases and permits an older now() only errs on the safe side: a holder looks unexpired a little
-- longer, and a new grant expires a little sooner.
BEGIN;
SELECT pg_advisory_xact_lock(7463829101552001);

CREATE TABLE IF NOT EXISTS tollgate_schema (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  version integer NOT NULL
);

-- Fences for every lease: strictly increasing, never reused (a sequence never hands out a value
-- twice, even across crashes and restarts; gaps are possible and harmless).
CREATE SEQUENCE IF NOT EXISTS tollgate_fence_seq AS bigint MINVALUE 1 NO CYCLE;

-- acquired_at_ns: see Units; NULL for a lease granted before schema version 4. grouped: the row is
-- one key of a multi-key grant (tollgate_multi_acquire); those are not found by lock_id.
CREATE TABLE IF NOT EXISTS tollgate_leases (
  key bytea PRIMARY KEY,
  lock_id text NOT NULL,
  fence bigint NOT NULL,
  expires_at timestamptz NOT NULL,
  owner bytea,
  acquired_at_ns bigint,
  grouped boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS tollgate_leases_expires_at ON tollgate_leases (expires_at);

-- Upgrading from version 3 or older: add the columns of version 4. The leases of a multi-key grant
-- made before then are recognised by their shared lock_id and marked grouped (a grant of one key
-- by tollgate_multi_acquire cannot be told apart: it stays findable by its lock_id until it ends).
ALTER TABLE tollgate_leases ADD COLUMN IF NOT EXISTS acquired_at_ns bigint;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute
                  WHERE attrelid = 'tollgate_leases'::regclass AND attname = 'grouped'
                    AND NOT attisdropped) THEN
    ALTER TABLE tollgate_leases ADD COLUMN grouped boolean NOT NULL DEFAULT false;
    UPDATE tollgate_leases l SET grouped = true
     WHERE EXISTS (SELECT 1 FROM tollgate_leases o WHERE o.lock_id = l.lock_id AND o.key <> l.key);
  END IF;
END $$;
-- The reverse index of lookups by lock_id (tollgate_lookup): single-key leases only. It indexes the
-- lease rows themselves, so it changes with them in the same statement (grant, release, re-grant of
-- an expired row) and can never point at another lease; an expired row it still finds is told apart
-- by expires_at on that very row.
CREATE INDEX IF NOT EXISTS tollgate_leases_lock_id ON tollgate_leases (lock_id) WHERE NOT grouped;

CREATE TABLE IF NOT EXISTS tollgate_registers (
  resource bytea PRIMARY KEY,
  fence numeric(20, 0) NOT NULL,
  value bytea NOT NULL
);

-- Highest fence seen per resource of the user's own data (tollgate_fence_check).
CREATE TABLE IF NOT EXISTS tollgate_fences (
  resource text PRIMARY KEY,
  fence bigint NOT NULL
);

-- Token buckets. layer '' holds Throttle buckets; CheckLayers layers are 1..64 bytes. debt is in
-- 1e-18 tokens as of at_us (server time, microseconds since the epoch); full_at_us is when the debt
-- reaches zero, indexed so full buckets can be found and deleted cheaply.
CREATE TABLE IF NOT EXISTS tollgate_buckets (
  layer bytea NOT NULL,
  key bytea NOT NULL,
  debt numeric NOT NULL,
  at_us bigint NOT NULL,
  full_at_us bigint NOT NULL,
  PRIMARY KEY (layer, key)
);
CREATE INDEX IF NOT EXISTS tollgate_buckets_full_at ON tollgate_buckets (full_at_us);

CREATE OR REPLACE FUNCTION tollgate_now_us() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT (extract(epoch FROM now()) * 1000000)::bigint $$;

-- A ttl in nanoseconds as an interval (rounded up to whole microseconds).
CREATE OR REPLACE FUNCTION tollgate_ttl(ttl_ns bigint) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT interval '1 microsecond' * ((ttl_ns + 999) / 1000) $$;

-- The advisory lock number under which acquisitions of lease key k take turns.
CREATE OR REPLACE FUNCTION tollgate_lease_lock(k bytea) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtextextended(encode(k, 'hex'), 7) $$;

-- Takes the lease on k if nobody holds it (absent, or expired by now()). Returns the new fence, or
-- NULL if the key is held. acq_ns: the caller's wall clock (Unix ns), stored as acquired_at_ns.
-- Version 4 added acq_ns; the version 3 function is dropped, and a caller of it (an older tollgate
-- still running during an upgrade) reaches this one and stores no acquisition time.
DROP FUNCTION IF EXISTS tollgate_acquire(bytea, text, bigint, bytea);
CREATE OR REPLACE FUNCTION tollgate_acquire(k bytea, lid text, ttl_ns bigint, own bytea,
                                            acq_ns bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  f bigint;
  exp timestamptz := now() + tollgate_ttl(ttl_ns);
BEGIN
  -- Acquisitions of one key take turns (until commit), so the fence each draws from the sequence
  -- is larger than every fence granted on that key before: without this, an acquirer that drew
  -- its fence first could commit its INSERT after a later acquirer's whole lease came and went.
  PERFORM pg_advisory_xact_lock(tollgate_lease_lock(k));
  UPDATE tollgate_leases l
     SET lock_id = lid, fence = nextval('tollgate_fence_seq'), expires_at = exp, owner = own,
         acquired_at_ns = acq_ns, grouped = false
   WHERE l.key = k AND l.expires_at <= now()
  RETURNING l.fence INTO f;
  IF FOUND THEN
    RETURN f;
  END IF;
  PERFORM 1 FROM tollgate_leases l WHERE l.key = k;
  IF FOUND THEN
    RETURN NULL;  -- held (checked first so a refused acquire does not burn a fence)
  END IF;
  INSERT INTO tollgate_leases (key, lock_id, fence, expires_at, owner, acquired_at_ns, grouped)
  VALUES (k, lid, nextval('tollgate_fence_seq'), exp, own, acq_ns, false)
  ON CONFLICT (key) DO NOTHING
  RETURNING fence INTO f;
  -- Housekeeping: drop a few leases expired for over a minute (their fences live on in the
  -- sequence, so deleting them cannot let a fence go back).
  DELETE FROM tollgate_leases d
   WHERE d.key IN (SELECT o.key FROM tollgate_leases o
                    WHERE o.expires_at < now() - interval '1 minute'
                    LIMIT 4 FOR UPDATE SKIP LOCKED);
  RETURN f;
END $$;

-- Releases the lease on k if lid holds it and it has not expired.
CREATE OR REPLACE FUNCTION tollgate_release(k bytea, lid text) RETURNS boolean
LANGUAGE sql AS $$
  WITH d AS (DELETE FROM tollgate_leases l
              WHERE l.key = k AND l.lock_id = lid AND l.expires_at > now() RETURNING 1)
  SELECT count(*) > 0 FROM d $$;

-- Moves the expiry of the lease lid holds on k to now() + ttl. Never revives an expired lease.
CREATE OR REPLACE FUNCTION tollgate_extend(k bytea, lid text, ttl_ns bigint) RETURNS boolean
LANGUAGE sql AS $$
  WITH u AS (UPDATE tollgate_leases l SET expires_at = now() + tollgate_ttl(ttl_ns)
              WHERE l.key = k AND l.lock_id = lid AND l.expires_at > now() RETURNING 1)
  SELECT count(*) > 0 FROM u $$;

-- The live lease on k: fence, nanoseconds left, owner; all NULL when nobody holds it. (Kept for
-- tollgate before version 4, which calls it; tollgate_lease is its successor.)
CREATE OR REPLACE FUNCTION tollgate_info(k bytea, OUT out_fence bigint, OUT out_ttl_ns bigint,
                                         OUT out_owner bytea)
LANGUAGE sql STABLE AS $$
  SELECT l.fence, (extract(epoch FROM l.expires_at - now()) * 1000000000)::bigint, l.owner
    FROM tollgate_leases l WHERE l.key = k AND l.expires_at > now() $$;

-- Schema version 4. The live lease on k: fence, nanoseconds left, owner, the holder's lock_id and
-- acquired_at_ns (NULL if unknown); all NULL when nobody holds it.
CREATE OR REPLACE FUNCTION tollgate_lease(k bytea, OUT out_fence bigint, OUT out_ttl_ns bigint,
                                          OUT out_owner bytea, OUT out_lock_id text,
                                          OUT out_acquired_at_ns bigint)
LANGUAGE sql STABLE AS $$
  SELECT l.fence, (extract(epoch FROM l.expires_at - now()) * 1000000000)::bigint, l.owner,
         l.lock_id, l.acquired_at_ns
    FROM tollgate_leases l WHERE l.key = k AND l.expires_at > now() $$;

-- Schema version 4. The live single-key lease held by lock_id lid: its key, fence, nanoseconds
-- left, owner and acquired_at_ns; all NULL when there is none (released, expired, never granted,
-- or a key of a multi-key grant). Read-only: one index probe of tollgate_leases_lock_id, and the
-- row it finds is the lease itself, so the lock_id it holds is checked on the same row that says
-- it is live.
CREATE OR REPLACE FUNCTION tollgate_lookup(lid text, OUT out_key bytea, OUT out_fence bigint,
                                           OUT out_ttl_ns bigint, OUT out_owner bytea,
                                           OUT out_acquired_at_ns bigint)
LANGUAGE sql STABLE AS $$
  SELECT l.key, l.fence, (extract(epoch FROM l.expires_at - now()) * 1000000000)::bigint,
         l.owner, l.acquired_at_ns
    FROM tollgate_leases l
   WHERE l.lock_id = lid AND NOT l.grouped AND l.expires_at > now()
   LIMIT 1 $$;

-- Stores v under r iff f >= the register's fence. Returns NULL when stored, else the stored
-- (newer) fence, so the caller can name both.
-- Refuses (SQLSTATE TGF02) a fence above the highest one the sequence has handed out: no lease
-- ever carried it, and accepting it would make every real holder's later write stale. The
-- sequence is not transactional, so its last value covers every fence a client can have seen.
CREATE OR REPLACE FUNCTION tollgate_fenced_set(r bytea, f numeric, v bytea) RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
  cur numeric;
  issued bigint;
BEGIN
  SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO issued FROM tollgate_fence_seq s;
  IF f > issued THEN
    RAISE EXCEPTION 'fence % was never issued; the highest fence issued so far is %', f, issued
      USING ERRCODE = 'TGF02', HINT = 'use the fence of a lease you hold';
  END IF;
  INSERT INTO tollgate_registers AS t (resource, fence, value) VALUES (r, f, v)
  ON CONFLICT ON CONSTRAINT tollgate_registers_pkey
  DO UPDATE SET fence = excluded.fence, value = excluded.value WHERE t.fence <= excluded.fence;
  IF FOUND THEN
    RETURN NULL;
  END IF;
  SELECT t.fence INTO cur FROM tollgate_registers t WHERE t.resource = r;
  RETURN cur;
END $$;

-- For the user's own tables: call inside the transaction that writes `resource`, before the write.
-- Records `fence` as the highest for the resource if it is at least the highest recorded so far
-- (equal is accepted: the same holder writing again) and keeps that row locked until the
-- transaction ends, so writers of one resource are serialized and an older fence can never commit
-- after a newer one. Otherwise raises SQLSTATE TGF01 "fence X is older than Y", which aborts the
-- transaction (nothing it wrote commits). SQLSTATE 22023 for a NULL resource or fence < 1.
CREATE OR REPLACE FUNCTION tollgate_fence_check(resource text, fence bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  cur bigint;
BEGIN
  IF $1 IS NULL OR $2 IS NULL OR $2 < 1 THEN
    RAISE EXCEPTION 'tollgate_fence_check: resource must not be NULL and fence must be a positive integer, got %', $2
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO tollgate_fences AS t (resource, fence) VALUES ($1, $2)
  ON CONFLICT ON CONSTRAINT tollgate_fences_pkey
  DO UPDATE SET fence = excluded.fence WHERE t.fence <= excluded.fence;
  IF FOUND THEN
    RETURN;
  END IF;
  SELECT t.fence INTO cur FROM tollgate_fences t WHERE t.resource = $1;
  RAISE EXCEPTION 'fence % is older than %', $2, cur
    USING ERRCODE = 'TGF01',
          DETAIL = format('resource %L already accepted fence %s', $1, cur),
          HINT = 'the lease was lost and re-granted; stop writing and re-acquire it';
END $$;

-- Token buckets, all or nothing. Arrays are parallel, one entry per layer: layer name, key,
-- capacity and rate in nano-tokens (integers), shadow flag; cost in nano-tokens. Locks (creating
-- where needed) every bucket in (layer, key) order so concurrent calls cannot deadlock, evaluates
-- all at now(), then charges every enforced layer and every shadow layer with room if no enforced
-- layer denies, else nothing. One row per layer, in input order: allowed, whole tokens remaining,
-- retry_after in ns (NULL = never), reset_after in ns. Finally deletes a few full buckets.
CREATE OR REPLACE FUNCTION tollgate_check_layers(layers bytea[], keys bytea[],
                                                 capacities numeric[], rates numeric[],
                                                 shadows boolean[], cost numeric)
RETURNS TABLE (ord integer, allowed boolean, remaining numeric, retry_ns numeric,
               reset_ns numeric)
LANGUAGE plpgsql AS $$
DECLARE
  n integer := cardinality(keys);
  now_us bigint := tollgate_now_us();
  inc numeric := cost * 1000000000;
  unit numeric := 1000000000000000000;
  max_ns numeric := 9223372036854775807;
  oks boolean[] := '{}';
  used numeric[] := '{}';
  retries numeric[] := '{}';
  stamps bigint[] := '{}';
  all_ok boolean := true;
  i integer;
  r record;
  d numeric;
  at bigint;
  win numeric;
  rate numeric;
BEGIN
  IF n IS NULL OR n = 0 OR cardinality(layers) <> n OR cardinality(capacities) <> n
     OR cardinality(rates) <> n OR cardinality(shadows) <> n THEN
    RAISE EXCEPTION 'tollgate_check_layers: arrays must be non-empty and of equal length'
      USING ERRCODE = '22023';
  END IF;
  FOR r IN SELECT DISTINCT u.l, u.k FROM unnest(layers, keys) AS u(l, k) ORDER BY u.l, u.k LOOP
    LOOP
      PERFORM 1 FROM tollgate_buckets b WHERE b.layer = r.l AND b.key = r.k FOR UPDATE;
      EXIT WHEN FOUND;
      INSERT INTO tollgate_buckets (layer, key, debt, at_us, full_at_us)
      VALUES (r.l, r.k, 0, now_us, now_us) ON CONFLICT DO NOTHING;
    END LOOP;
  END LOOP;
  FOR i IN 1..n LOOP
    SELECT b.debt, b.at_us INTO d, at FROM tollgate_buckets b
     WHERE b.layer = layers[i] AND b.key = keys[i];
    rate := rates[i];
    win := capacities[i] * 1000000000;
    d := greatest(0, d - greatest(0, now_us - at) * rate * 1000);
    stamps[i] := greatest(at, now_us);
    IF inc > win THEN
      oks[i] := false;
      retries[i] := NULL;
      used[i] := d;
    ELSIF d + inc <= win THEN
      oks[i] := true;
      retries[i] := 0;
      used[i] := d + inc;
    ELSE
      oks[i] := false;
      retries[i] := least(max_ns, div(d + inc - win + rate - 1, rate));
      used[i] := d;
    END IF;
    IF NOT oks[i] AND NOT shadows[i] THEN
      all_ok := false;
    END IF;
  END LOOP;
  IF all_ok THEN
    FOR i IN 1..n LOOP
      IF oks[i] THEN
        UPDATE tollgate_buckets b
           SET debt = used[i], at_us = stamps[i],
               full_at_us = stamps[i] + div(used[i] + rates[i] * 1000 - 1, rates[i] * 1000)
         WHERE b.layer = layers[i] AND b.key = keys[i];
      END IF;
    END LOOP;
  END IF;
  DELETE FROM tollgate_buckets b
   WHERE (b.layer, b.key) IN (SELECT c.layer, c.key FROM tollgate_buckets c
                               WHERE c.full_at_us <= now_us
                               LIMIT 8 FOR UPDATE SKIP LOCKED);
  FOR i IN 1..n LOOP
    ord := i;
    allowed := oks[i];
    -- As the core reports it: a layer that allows shows its balance after the charge, even when
    -- another layer denied the request (and so nothing was charged).
    remaining := CASE WHEN used[i] >= capacities[i] * 1000000000 THEN 0
                      ELSE div(capacities[i] * 1000000000 - used[i], unit) END;
    retry_ns := retries[i];
    reset_ns := least(max_ns, div(used[i] + rates[i] - 1, rates[i]));
    RETURN NEXT;
  END LOOP;
END $$;


-- Multi-key locks (schema version 3). A multi-key grant is one ordinary lease per key, all with
-- one lock_id and one fence, so tollgate_release/_extend/_info work on each key alone.
--
-- Lock order, so concurrent calls cannot deadlock: tollgate_multi_acquire first takes the
-- advisory lock of every key (the very locks tollgate_acquire takes, so it also takes turns with
-- single-key acquisitions), in ascending lock-number order, then the rows of its keys in key
-- order; tollgate_multi_release and tollgate_multi_extend take rows only, in key order; the
-- single-key functions take at most one advisory lock, then one row.

-- Takes the leases on all of ks (distinct keys) under lock_id lid if none of them is held (absent,
-- or expired by now()). Returns the one new fence, drawn after every key's advisory lock is held,
-- so it is larger than every fence granted on any of the keys before; NULL (and nothing changed)
-- if any key is held. acq_ns as tollgate_acquire's (added, and the old function dropped, in
-- version 4); the rows are marked grouped.
DROP FUNCTION IF EXISTS tollgate_multi_acquire(bytea[], text, bigint, bytea);
CREATE OR REPLACE FUNCTION tollgate_multi_acquire(ks bytea[], lid text, ttl_ns bigint, own bytea,
                                                  acq_ns bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  f bigint;
  exp timestamptz := now() + tollgate_ttl(ttl_ns);
  lock_no bigint;
BEGIN
  FOR lock_no IN SELECT DISTINCT tollgate_lease_lock(u.k) FROM unnest(ks) AS u(k) ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(lock_no);
  END LOOP;
  -- A key held: refused without locking its holder's row (nor burning a fence).
  PERFORM 1 FROM tollgate_leases l WHERE l.key = ANY (ks) AND l.expires_at > now();
  IF FOUND THEN
    RETURN NULL;
  END IF;
  -- Lock the keys' rows (existing ones; new rows can only come from acquirers, which wait for the
  -- advisory locks held here) and look again: an extend that started before a lease expired may
  -- have moved its expiry meanwhile; once locked, nothing can.
  PERFORM 1 FROM tollgate_leases l WHERE l.key = ANY (ks) ORDER BY l.key FOR UPDATE;
  PERFORM 1 FROM tollgate_leases l WHERE l.key = ANY (ks) AND l.expires_at > now();
  IF FOUND THEN
    RETURN NULL;
  END IF;
  f := nextval('tollgate_fence_seq');
  INSERT INTO tollgate_leases AS t (key, lock_id, fence, expires_at, owner, acquired_at_ns,
                                     grouped)
  SELECT u.k, lid, f, exp, own, acq_ns, true FROM unnest(ks) AS u(k) ORDER BY u.k
  ON CONFLICT (key) DO UPDATE
     SET lock_id = excluded.lock_id, fence = excluded.fence, expires_at = excluded.expires_at,
         owner = excluded.owner, acquired_at_ns = excluded.acquired_at_ns, grouped = true;
  DELETE FROM tollgate_leases d
   WHERE d.key IN (SELECT o.key FROM tollgate_leases o
                    WHERE o.expires_at < now() - interval '1 minute'
                    LIMIT 4 FOR UPDATE SKIP LOCKED);
  RETURN f;
END $$;

-- Releases each of ks that lid holds (unexpired); returns how many.
CREATE OR REPLACE FUNCTION tollgate_multi_release(ks bytea[], lid text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
BEGIN
  PERFORM 1 FROM tollgate_leases l WHERE l.key = ANY (ks) AND l.lock_id = lid
    ORDER BY l.key FOR UPDATE;
  DELETE FROM tollgate_leases l WHERE l.key = ANY (ks) AND l.lock_id = lid AND l.expires_at > now();
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;

-- All or none: if lid holds every one of ks (distinct keys) unexpired, moves each expiry to now()
-- + ttl and returns true; else changes nothing and returns false. Never revives an expired lease.
CREATE OR REPLACE FUNCTION tollgate_multi_extend(ks bytea[], lid text, ttl_ns bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  n integer;
BEGIN
  SELECT count(*) INTO n FROM (SELECT 1 FROM tollgate_leases l
                                WHERE l.key = ANY (ks) AND l.lock_id = lid
                                  AND l.expires_at > now()
                                ORDER BY l.key FOR UPDATE) AS held;
  IF n <> cardinality(ks) THEN
    RETURN false;
  END IF;
  UPDATE tollgate_leases l SET expires_at = now() + tollgate_ttl(ttl_ns)
   WHERE l.key = ANY (ks) AND l.lock_id = lid;
  RETURN true;
END $$;

-- Fenced semaphores (schema version 3): one row per (semaphore key, slot), reused when the slot is
-- granted again. A permit is held while expires_at > now(); expired rows only occupy space (a few
-- are deleted by each acquire once expired for a minute). All unexpired permits of a key share
-- one sem_limit. Semaphore keys are a namespace of their own (no relation to tollgate_leases).
CREATE TABLE IF NOT EXISTS tollgate_permits (
  key bytea NOT NULL,
  slot integer NOT NULL,
  permit_id text NOT NULL,
  sem_limit integer NOT NULL,
  fence bigint NOT NULL,
  expires_at timestamptz NOT NULL,
  owner bytea,
  PRIMARY KEY (key, slot)
);
CREATE INDEX IF NOT EXISTS tollgate_permits_permit_id ON tollgate_permits (key, permit_id);
CREATE INDEX IF NOT EXISTS tollgate_permits_expires_at ON tollgate_permits (expires_at);

-- Grants a permit of semaphore k (limit lim) to permit id pid: the lowest slot in [0, lim) with no
-- unexpired permit, a new fence, expiry now() + ttl. Returns (slot, fence, lim) when granted;
-- (NULL, NULL, L) when the unexpired permits have another limit L; all NULL when all lim slots are
-- held. Acquisitions of one semaphore take turns (an advisory lock until commit, as
-- tollgate_acquire's), so fences of one semaphore's permits increase in grant order.
CREATE OR REPLACE FUNCTION tollgate_sem_acquire(k bytea, lim integer, pid text, ttl_ns bigint,
                                                own bytea, OUT out_slot integer,
                                                OUT out_fence bigint, OUT out_limit integer)
LANGUAGE plpgsql AS $$
DECLARE
  exp timestamptz := now() + tollgate_ttl(ttl_ns);
  held integer;
  cur integer;
  free_slot integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(encode(k, 'hex'), 8));
  LOOP
    SELECT count(*), min(p.sem_limit) INTO held, cur FROM tollgate_permits p
     WHERE p.key = k AND p.expires_at > now();
    IF held > 0 AND cur <> lim THEN
      out_limit := cur;
      RETURN;
    END IF;
    IF held >= lim THEN
      RETURN;
    END IF;
    SELECT g.s INTO free_slot FROM generate_series(0, lim - 1) AS g(s)
     WHERE NOT EXISTS (SELECT 1 FROM tollgate_permits p
                        WHERE p.key = k AND p.slot = g.s AND p.expires_at > now())
     ORDER BY g.s LIMIT 1;
    IF free_slot IS NULL THEN
      RETURN;  -- cannot happen (unexpired permits all sit below their common limit)
    END IF;
    -- The slot's row, if any, holds an expired permit. The WHERE re-checks it under the row lock:
    -- a tollgate_sem_extend that started before the expiry may have extended it meanwhile; then
    -- nothing is written and the loop looks again (the slot now counts as held).
    INSERT INTO tollgate_permits AS t (key, slot, permit_id, sem_limit, fence, expires_at, owner)
    VALUES (k, free_slot, pid, lim, nextval('tollgate_fence_seq'), exp, own)
    ON CONFLICT (key, slot) DO UPDATE
       SET permit_id = excluded.permit_id, sem_limit = excluded.sem_limit,
           fence = excluded.fence, expires_at = excluded.expires_at, owner = excluded.owner
     WHERE t.expires_at <= now()
    RETURNING t.slot, t.fence INTO out_slot, out_fence;
    EXIT WHEN FOUND;
  END LOOP;
  out_limit := lim;
  DELETE FROM tollgate_permits d
   WHERE (d.key, d.slot) IN (SELECT o.key, o.slot FROM tollgate_permits o
                              WHERE o.expires_at < now() - interval '1 minute'
                              LIMIT 4 FOR UPDATE SKIP LOCKED);
END $$;

-- Releases permit pid of semaphore k if it has not expired.
CREATE OR REPLACE FUNCTION tollgate_sem_release(k bytea, pid text) RETURNS boolean
LANGUAGE sql AS $$
  WITH d AS (DELETE FROM tollgate_permits p
              WHERE p.key = k AND p.permit_id = pid AND p.expires_at > now() RETURNING 1)
  SELECT count(*) > 0 FROM d $$;

-- Moves the expiry of permit pid of semaphore k to now() + ttl. Never revives an expired permit.
CREATE OR REPLACE FUNCTION tollgate_sem_extend(k bytea, pid text, ttl_ns bigint) RETURNS boolean
LANGUAGE sql AS $$
  WITH u AS (UPDATE tollgate_permits p SET expires_at = now() + tollgate_ttl(ttl_ns)
              WHERE p.key = k AND p.permit_id = pid AND p.expires_at > now() RETURNING 1)
  SELECT count(*) > 0 FROM u $$;

-- Semaphore k's unexpired permits: their limit, how many, and the fence of the newest (all NULL
-- but out_holders = 0 when there is none).
CREATE OR REPLACE FUNCTION tollgate_sem_info(k bytea, OUT out_limit integer,
                                             OUT out_holders bigint, OUT out_fence bigint)
LANGUAGE sql STABLE AS $$
  SELECT min(p.sem_limit), count(*), max(p.fence)
    FROM tollgate_permits p WHERE p.key = k AND p.expires_at > now() $$;
