// The etcd backend's key layout, stored values and JSON helpers for the v3 gateway (shared by the
// lease, semaphore and multi-key operations of AsyncEtcdBackend). Internal to the etcd backend.
//
// Keys (<hex>: lowercase hex of the caller's key, so any bytes are fine and no key's prefix is
// another's):
//   tollgate/lock/<hex>          a lease (LockValue), attached to an etcd lease; fence = the key's
//                                create_revision.
//   tollgate/i/<lock_id>         the reverse index of a single-key lease: value = the caller's key
//                                (raw bytes), attached to the lease's etcd lease. Put in the
//                                acquire txn, re-put with the new etcd lease in every extend txn,
//                                deleted in every release txn, and it dies with the etcd lease on
//                                expiry. Only for lock values with "indexed": true (multi-key
//                                grants and leases from before it existed have none).
//   tollgate/reg/<hex>           a fenced register.
//   tollgate/sem/<hex>/<slot>    a semaphore permit (PermitValue), <slot> 4 decimal digits
//                                (0000..1023, so key order is slot order), attached to an etcd
//                                lease of its own; fence = the key's create_revision (the same
//                                cluster revision sequence as lease fences).
#ifndef TOLLGATE_BACKENDS_ETCD_ETCD_CODEC_H_
#define TOLLGATE_BACKENDS_ETCD_ETCD_CODEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tollgate/clock.h"

namespace tollgate::etcd {

// The optimistic loops (read, then a txn guarded by what was read) give up after this many lost
// races in a row.
inline constexpr int kMaxTxnRetries = 100;

// base64 of `s` (keys and values are base64 in the gateway's JSON), and back (nullopt unless `j`
// is a valid base64 string).
std::string B64(std::string_view s);
std::optional<std::string> UnB64(const nlohmann::json& j);
// The int64 `field` of `obj` (the gateway writes int64 as JSON strings and omits zeros): 0 if
// absent or malformed.
int64_t Int(const nlohmann::json& obj, const char* field);
// The cluster revision in a reply's header (0 if absent).
int64_t HeaderRevision(const nlohmann::json& r);
// Whether a txn reply says the compare held.
bool Succeeded(const nlohmann::json& r);

std::string LockKey(std::string_view key);
// REQUIRES: lock_id is 32 lowercase hex characters (so no index key is a prefix of another).
std::string IndexKey(std::string_view lock_id);
std::string RegKey(std::string_view resource);
// The permits of semaphore `key` are the keys in [SemPrefix(key), SemRangeEnd(key)).
std::string SemPrefix(std::string_view key);
std::string SemRangeEnd(std::string_view key);
// REQUIRES: 0 <= slot < 10000.
std::string PermitKey(std::string_view key, int64_t slot);
// The slot of a permit key under `prefix`, or nullopt if the key is not a permit key.
std::optional<int64_t> PermitSlot(std::string_view prefix, std::string_view permit_key);

// A requested ttl in whole seconds, rounded up, at least 1 (etcd leases are whole seconds; etcd
// may grant more: its minimum lease, about 2 s by default).
int64_t TtlSeconds(Duration ttl);

// A lease's value: {"id": lock_id, "owner_b64"?: base64(owner), "shared"?: true, "at_ns"?: int,
// "indexed"?: true}. `shared`: the etcd lease is attached to other lock keys too (a multi-key
// grant), so releasing or extending this key must not revoke it outright (RevokeIfUnused).
// `acquired_at`: the tollgate process's wall clock at the grant, as Unix nanoseconds ("at_ns";
// absent in values written before it existed, which still decode: nullopt). `indexed`: a single-key
// lease with an index key (IndexKey(id)) to keep in step.
struct LockValue {
  std::string id;
  std::optional<std::string> owner;
  bool shared = false;
  std::optional<WallTime> acquired_at;
  bool indexed = false;
};
std::string EncodeLock(const LockValue& v);
std::optional<LockValue> DecodeLock(const std::string& s);
// Whether the lock value (null: no lock) names `lock_id` (constant time).
bool Holds(const std::string* lock_value, std::string_view lock_id);

// A permit's value: {"id": permit_id, "limit": N, "owner_b64"?: base64(owner)}.
struct PermitValue {
  std::string id;
  int64_t limit = 0;
  std::optional<std::string> owner;
};
std::string EncodePermit(const PermitValue& v);
std::optional<PermitValue> DecodePermit(const std::string& s);

// Txn operations on the index key of `lock_id`: put it (value `key`) with etcd lease `lease`, or
// delete it.
nlohmann::json IndexPut(std::string_view lock_id, std::string_view key, int64_t lease);
nlohmann::json IndexDelete(std::string_view lock_id);

// One stored key as a range reply shows it.
struct Kv {
  std::string key;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;
  std::string value;
};
// An element of a range reply's "kvs": nullopt if malformed (no key, or revisions not positive).
std::optional<Kv> ParseKv(const nlohmann::json& e);

// Txn compares: mod_revision(key) == mod; create_revision(key) == create (0: absent); every key in
// [key, range_end) created before revision `below` (vacuously true when there is none).
nlohmann::json ModIs(const std::string& key, int64_t mod);
nlohmann::json CreateIs(const std::string& key, int64_t create);
nlohmann::json AllCreatedBefore(const std::string& key, const std::string& range_end,
                                int64_t below);

// Unavailable naming contention (never Aborted, which means "stale fence" to callers).
absl::Status Contention(std::string_view what);
// Internal: etcd answered something this backend cannot read.
absl::Status Unexpected(std::string_view what);
// FailedPrecondition: "lease on '<key>' is not held by this lock_id".
absl::Status NotHeld(std::string_view key);
// FailedPrecondition: "permit on semaphore '<key>' is not held by this permit_id".
absl::Status PermitNotHeld(std::string_view key);
// InvalidArgument: `limit <asked> differs from the limit <held> of the current holders of
// semaphore "<key>"` (key truncated to 64 bytes).
absl::Status LimitDiffers(std::string_view key, int64_t asked, int64_t held);

}  // namespace tollgate::etcd

#endif  // TOLLGATE_BACKENDS_ETCD_ETCD_CODEC_H_
