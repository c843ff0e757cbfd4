// Invariant checks for the journal record codec (src/storage/record_codec.h) and recovery
// (src/storage/recovery.h), shared by the libFuzzer target (fuzz/record_codec_fuzz.cc) and the
// corpus regression test (src/storage/record_codec_corpus_test.cc). Header-only.

#ifndef TOLLGATE_FUZZ_RECORD_CODEC_CHECK_H_
#define TOLLGATE_FUZZ_RECORD_CODEC_CHECK_H_

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "core/absl_compat.h"
#include "storage/record_codec.h"
#include "storage/recovery.h"
#include "tollgate/limiter.h"
#include "tollgate/store.h"

namespace tollgate::fuzz {
namespace record_codec_internal {

__extension__ typedef unsigned __int128 u128;
__extension__ typedef __int128 i128;

// Takes fixed-size pieces off the front of the input; reads past the end give zeros / fewer bytes,
// so every input decodes to something.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool empty() const { return in_.empty(); }
  // Little-endian, `bytes` <= 8.
  uint64_t Int(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes && !in_.empty(); ++i) {
      v |= static_cast<uint64_t>(static_cast<unsigned char>(in_[0])) << (8 * i);
      in_.remove_prefix(1);
    }
    return v;
  }
  std::string_view Bytes(size_t n) {
    const std::string_view out = in_.substr(0, n);
    in_.remove_prefix(out.size());
    return out;
  }

 private:
  std::string_view in_;
};

inline int64_t Nanos(WallTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
inline WallTime FromNanos(int64_t ns) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::nanoseconds(ns)));
}
inline u128 Debt(const BucketSnapshot& s) {
  return (static_cast<u128>(s.debt_hi) << 64) | s.debt_lo;
}

inline bool SameLease(const StoredLease& a, const StoredLease& b) {
  return a.lock_id == b.lock_id && a.fence == b.fence && a.expiry == b.expiry && a.owner == b.owner &&
         a.acquired_at == b.acquired_at && a.indexed == b.indexed;
}
inline bool SamePermit(const StoredPermit& a, const StoredPermit& b) {
  return a.slot == b.slot && a.limit == b.limit && a.fence == b.fence && a.expiry == b.expiry &&
         a.owner == b.owner;
}
inline bool SameBucket(const BucketSnapshot& a, const BucketSnapshot& b) {
  return a.table == b.table && a.key == b.key && a.debt_hi == b.debt_hi && a.debt_lo == b.debt_lo &&
         a.rate == b.rate;
}

// What a RecoveredState was before one record (records only ever append): cheaper than a copy.
struct Summary {
  uint64_t max_fence;
  size_t leases, registers, buckets, permits;
  explicit Summary(const RecoveredState& s)
      : max_fence(s.max_fence),
        leases(s.leases.size()),
        registers(s.registers.size()),
        buckets(s.buckets.size()),
        permits(s.permits.size()) {}
  bool operator==(const Summary&) const = default;
};

// Every decoder on the same bytes: whatever decodes re-encodes to exactly those bytes (the format
// has one encoding per value). `split` cuts the bytes into a bucket key and value.
inline std::string CheckDecoders(std::string_view bytes, uint8_t split) {
  if (auto lease = storage::DecodeLease(bytes)) {
    if (storage::EncodeLease(*lease) != bytes) return "lease: re-encoding differs";
  }
  if (auto reg = storage::DecodeRegister(bytes)) {
    if (storage::EncodeRegister(reg->first, reg->second) != bytes) {
      return "register: re-encoding differs";
    }
  }
  if (auto permit = storage::DecodePermit(bytes)) {
    if (storage::EncodePermit(*permit) != bytes) return "permit: re-encoding differs";
  }
  if (auto names = storage::DecodePermitKey(bytes)) {
    if (storage::PermitKey(names->first, names->second) !=
        std::string(1, 'P') + std::string(bytes)) {
      return "permit key: re-encoding differs";
    }
  }
  const std::optional<uint64_t> u = storage::DecodeU64(bytes);
  if (u.has_value() != (bytes.size() == 8)) return "u64: accepts exactly 8 bytes";
  if (u && storage::EncodeU64(*u) != bytes) return "u64: re-encoding differs";
  const size_t cut = std::min<size_t>(split, bytes.size());
  const std::string_view key = bytes.substr(0, cut), value = bytes.substr(cut);
  if (auto b = storage::DecodeBucket(key, value)) {
    if (storage::BucketKey(b->first.table, b->first.key) !=
        std::string(1, 'B') + std::string(key)) {
      return "bucket: re-encoded key differs";
    }
    if (storage::EncodeBucket(b->first, b->second) != value) return "bucket: re-encoding differs";
  }
  return "";
}

// Values built from the input survive encode then decode (lock ids cut to 255 bytes, as
// documented).
inline std::string CheckEncoders(std::string_view input) {
  Reader r(input);
  StoredLease lease;
  lease.fence = r.Int(8);
  lease.expiry = FromNanos(static_cast<int64_t>(r.Int(8)));
  lease.lock_id = std::string(r.Bytes(r.Int(2) % 300));
  const uint64_t flags = r.Int(1);
  if (flags & 1) lease.owner = std::string(r.Bytes(r.Int(1)));
  if (flags & 2) lease.acquired_at = FromNanos(static_cast<int64_t>(r.Int(8)));
  lease.indexed = (flags & 4) != 0;
  auto back = storage::DecodeLease(storage::EncodeLease(lease));
  StoredLease want = lease;
  want.lock_id.resize(std::min<size_t>(want.lock_id.size(), 255));
  // A lease without acquired_at is written as a version 1 record, which has no index flag.
  if (!want.acquired_at) want.indexed = false;
  if (!back || !SameLease(*back, want)) return "lease: decode(encode(x)) != x";

  const uint64_t fence = r.Int(8);
  const std::string_view value = r.Bytes(r.Int(1));
  auto reg = storage::DecodeRegister(storage::EncodeRegister(fence, value));
  if (!reg || reg->first != fence || reg->second != value)
    return "register: decode(encode(x)) != x";

  BucketSnapshot s;
  s.table = std::string(r.Bytes(r.Int(1)));
  s.key = std::string(r.Bytes(r.Int(1)));
  s.debt_hi = r.Int(8);
  s.debt_lo = r.Int(8);
  s.rate = r.Int(8);
  const WallTime at = FromNanos(static_cast<int64_t>(r.Int(8)));
  const std::string key = storage::BucketKey(s.table, s.key);
  if (key.empty() || key[0] != storage::kBucketPrefix) return "bucket: key lacks its prefix";
  auto b = storage::DecodeBucket(std::string_view(key).substr(1), storage::EncodeBucket(s, at));
  if (!b || !SameBucket(b->first, s) || b->second != at) return "bucket: decode(encode(x)) != x";

  const uint64_t u = r.Int(8);
  if (storage::DecodeU64(storage::EncodeU64(u)) != u) return "u64: decode(encode(x)) != x";

  // Read last, so that older corpus inputs keep their meaning for the fields above.
  StoredPermit permit;
  permit.slot = static_cast<int64_t>(r.Int(4));
  permit.limit = static_cast<int64_t>(r.Int(4));
  permit.fence = r.Int(8);
  permit.expiry = FromNanos(static_cast<int64_t>(r.Int(8)));
  if (r.Int(1) & 1) permit.owner = std::string(r.Bytes(r.Int(1)));
  auto p = storage::DecodePermit(storage::EncodePermit(permit));
  if (!p || !SamePermit(*p, permit)) return "permit: decode(encode(x)) != x";
  const std::string sem(r.Bytes(r.Int(1))), id(r.Bytes(r.Int(1)));
  const std::string pkey = storage::PermitKey(sem, id);
  if (pkey.empty() || pkey[0] != storage::kPermitPrefix) return "permit key lacks its prefix";
  auto names = storage::DecodePermitKey(std::string_view(pkey).substr(1));
  if (!names || names->first != sem || names->second != id) {
    return "permit key: decode(encode(x)) != x";
  }
  return "";
}

// Whether recovery.h's contract admits the record: it decodes and its values are in range (keys
// that are no record are admitted and ignored).
inline bool Admissible(std::string_view key, std::string_view value) {
  if (key == storage::kFenceKey) {
    const std::optional<uint64_t> f = storage::DecodeU64(value);
    return f && *f <= storage::kMaxStoredFence;
  }
  if (key.empty()) return true;
  switch (key[0]) {
    case storage::kLeasePrefix: {
      const std::optional<StoredLease> lease = storage::DecodeLease(value);
      return lease && lease->fence != 0 && lease->fence <= storage::kMaxStoredFence &&
             Nanos(lease->expiry) >= 0;
    }
    case storage::kPermitPrefix: {
      const auto names = storage::DecodePermitKey(key.substr(1));
      const std::optional<StoredPermit> p = storage::DecodePermit(value);
      return names && !names->first.empty() && names->first.size() <= kMaxKeyBytes &&
             !names->second.empty() && names->second.size() <= 255 && p && p->fence != 0 &&
             p->fence <= storage::kMaxStoredFence && p->limit >= 1 &&
             p->limit <= kMaxSemaphoreLimit && p->slot < p->limit && Nanos(p->expiry) >= 0;
    }
    case storage::kBucketPrefix: {
      const auto b = storage::DecodeBucket(key.substr(1), value);
      return b && b->first.rate <= kMaxRate.nanos &&
             Debt(b->first) <= static_cast<u128>(kMaxCapacity.nanos) * 1'000'000'000u;
    }
    case storage::kRegisterPrefix: {
      const auto reg = storage::DecodeRegister(value);
      return reg && reg->first != 0;
    }
    default:
      return true;
  }
}

// What RecoverRecord must have done with an admissible record, checked against the decoders and
// an independent computation of the refill. `before` summarizes the state before the record.
inline std::string CheckAccepted(std::string_view key, std::string_view value, WallTime now,
                                 const Summary& before, const RecoveredState& after) {
  const bool same_sizes =
      after.leases.size() == before.leases && after.registers.size() == before.registers &&
      after.buckets.size() == before.buckets && after.permits.size() == before.permits;
  if (key == storage::kFenceKey) {
    const std::optional<uint64_t> f = storage::DecodeU64(value);
    if (!same_sizes || after.max_fence != std::max(before.max_fence, *f)) {
      return "fence counter: wrong state";
    }
  } else if (!key.empty() && key[0] == storage::kLeasePrefix) {
    const std::optional<StoredLease> lease = storage::DecodeLease(value);
    if (after.leases.size() != before.leases + 1 || after.leases.back().first != key.substr(1) ||
        !SameLease(after.leases.back().second, *lease) ||
        after.max_fence != std::max(before.max_fence, lease->fence)) {
      return "lease: wrong state";
    }
  } else if (!key.empty() && key[0] == storage::kPermitPrefix) {
    const auto names = storage::DecodePermitKey(key.substr(1));
    const std::optional<StoredPermit> p = storage::DecodePermit(value);
    if (after.permits.size() != before.permits + 1 || after.permits.back().key != names->first ||
        after.permits.back().permit_id != names->second ||
        !SamePermit(after.permits.back().permit, *p) ||
        after.max_fence != std::max(before.max_fence, p->fence) ||
        after.leases.size() != before.leases) {
      return "permit: wrong state";
    }
  } else if (!key.empty() && key[0] == storage::kBucketPrefix) {
    const auto b = storage::DecodeBucket(key.substr(1), value);
    if (after.buckets.size() != before.buckets + 1 || after.max_fence != before.max_fence) {
      return "bucket: wrong state";
    }
    const i128 elapsed = static_cast<i128>(Nanos(now)) - Nanos(b->second);
    const u128 refilled = elapsed > 0 ? static_cast<u128>(elapsed) * b->first.rate : 0;
    BucketSnapshot want = b->first;
    const u128 debt = Debt(want) > refilled ? Debt(want) - refilled : 0;
    want.debt_hi = static_cast<uint64_t>(debt >> 64);
    want.debt_lo = static_cast<uint64_t>(debt);
    if (!SameBucket(after.buckets.back(), want)) return "bucket: wrong debt after refill";
  } else if (!key.empty() && key[0] == storage::kRegisterPrefix) {
    const auto reg = storage::DecodeRegister(value);
    if (after.registers.size() != before.registers + 1 || after.max_fence != before.max_fence ||
        after.registers.back().resource != key.substr(1) ||
        after.registers.back().fence != reg->first || after.registers.back().value != reg->second) {
      return "register: wrong state";
    }
  } else if (!same_sizes || after.max_fence != before.max_fence) {
    return "a key that is no record changed the state";
  }
  return "";
}

// Feeds records to RecoverRecord: exactly the admissible ones are accepted and applied correctly;
// the others are rejected with DataLoss naming the key and no change to the state.
inline std::string CheckRecovery(std::string_view input) {
  Reader r(input);
  const WallTime now = FromNanos(static_cast<int64_t>(r.Int(8)));
  RecoveredState state;
  while (!r.empty()) {
    const std::string_view key = r.Bytes(r.Int(1));
    const std::string_view value = r.Bytes(r.Int(1));
    const Summary before(state);
    const absl::Status st = storage::RecoverRecord(key, value, now, &state);
    if (st.ok() != Admissible(key, value)) {
      return st.ok() ? "recovery: accepted an invalid record" : "recovery: rejected a valid record";
    }
    if (st.ok()) {
      const std::string failure = CheckAccepted(key, value, now, before, state);
      if (!failure.empty()) return "recovery: " + failure;
      continue;
    }
    const std::string named = "corrupt record at key \"" + absl::CHexEscape(AV(key.substr(0, 64)));
    if (st.code() != absl::StatusCode::kDataLoss || SV(st.message()).rfind(named, 0) != 0) {
      return "recovery: error is not DataLoss naming the key: " + std::string(st.message());
    }
    if (!(Summary(state) == before)) return "recovery: a rejected record changed the state";
  }
  return "";
}

}  // namespace record_codec_internal

// Runs one fuzzer input and returns a description of the first violated invariant, or "" when all
// hold. Byte 0 selects the mode. Even: byte 1 is a split point and the rest is one record value,
// run through every decoder (whatever decodes re-encodes to the same bytes; DecodeU64 accepts
// exactly 8 bytes) and read as field values for encode-then-decode round trips. Odd: the rest is
// an 8-byte wall time and then records (u8 key length, key, u8 value length, value) fed to
// RecoverRecord (see CheckRecovery).
inline std::string CheckRecordCodec(const uint8_t* data, size_t size) {
  if (size < 2) return "";
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1) return record_codec_internal::CheckRecovery(rest);
  const std::string failure = record_codec_internal::CheckDecoders(rest.substr(1), data[1]);
  if (!failure.empty()) return failure;
  return record_codec_internal::CheckEncoders(rest.substr(1));
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_RECORD_CODEC_CHECK_H_
