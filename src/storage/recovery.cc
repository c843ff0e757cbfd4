#include "storage/recovery.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "storage/record_codec.h"
#include "tollgate/limiter.h"

namespace tollgate::storage {
namespace {

__extension__ typedef unsigned __int128 u128;

// Largest debt a bucket can carry: the burst window of the largest capacity, in 1e-18 tokens.
constexpr u128 kMaxDebt = static_cast<u128>(kMaxCapacity.nanos) * 1'000'000'000u;

absl::Status Corrupt(std::string_view key, std::string_view what) {
  constexpr size_t kShown = 64;
  std::string shown = absl::CHexEscape(AV(key.substr(0, kShown)));
  if (key.size() > kShown) shown += "...";
  return absl::DataLossError(absl::StrCat("corrupt record at key \"", shown, "\": ", AV(what)));
}

int64_t Nanos(WallTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// Nanoseconds from `from` to `to`, 0 if `to` is not later. Exact for any two times (the difference
// of two int64 values fits in uint64 when it is positive).
uint64_t ElapsedNanos(WallTime from, WallTime to) {
  const int64_t a = Nanos(from), b = Nanos(to);
  return b > a ? static_cast<uint64_t>(b) - static_cast<uint64_t>(a) : 0;
}

}  // namespace

absl::Status RecoverRecord(std::string_view k, std::string_view v, WallTime now,
                           RecoveredState* state) {
  if (k == kFenceKey) {
    const std::optional<uint64_t> f = DecodeU64(v);
    if (!f) return Corrupt(k, "not an 8-byte fence counter");
    if (*f > kMaxStoredFence)
      return Corrupt(k, absl::StrCat("fence counter ", *f, " is too large"));
    state->max_fence = std::max(state->max_fence, *f);
  } else if (!k.empty() && k[0] == kLeasePrefix) {
    std::optional<StoredLease> lease = DecodeLease(v);
    if (!lease) return Corrupt(k, "not a valid lease record");
    if (lease->fence == 0 || lease->fence > kMaxStoredFence) {
      return Corrupt(k, absl::StrCat("lease fence ", lease->fence, " is out of range"));
    }
    if (Nanos(lease->expiry) < 0) return Corrupt(k, "lease expiry is before 1970");
    state->max_fence = std::max(state->max_fence, lease->fence);
    state->leases.emplace_back(std::string(k.substr(1)), *std::move(lease));
  } else if (!k.empty() && k[0] == kPermitPrefix) {
    std::optional<std::pair<std::string, std::string>> names = DecodePermitKey(k.substr(1));
    if (!names || names->first.empty() || names->first.size() > kMaxKeyBytes ||
        names->second.empty() || names->second.size() > 255) {
      return Corrupt(k, "not a valid permit key");
    }
    std::optional<StoredPermit> permit = DecodePermit(v);
    if (!permit) return Corrupt(k, "not a valid permit record");
    if (permit->fence == 0 || permit->fence > kMaxStoredFence) {
      return Corrupt(k, absl::StrCat("permit fence ", permit->fence, " is out of range"));
    }
    if (permit->limit < 1 || permit->limit > kMaxSemaphoreLimit || permit->slot >= permit->limit) {
      return Corrupt(k, absl::StrCat("permit slot ", permit->slot, " of limit ", permit->limit,
                                     " is out of range"));
    }
    if (Nanos(permit->expiry) < 0) return Corrupt(k, "permit expiry is before 1970");
    state->max_fence = std::max(state->max_fence, permit->fence);
    state->permits.push_back(
        {std::move(names->first), std::move(names->second), *std::move(permit)});
  } else if (!k.empty() && k[0] == kBucketPrefix) {
    std::optional<std::pair<BucketSnapshot, WallTime>> b = DecodeBucket(k.substr(1), v);
    if (!b) return Corrupt(k, "not a valid bucket checkpoint");
    BucketSnapshot& snap = b->first;
    u128 debt = (static_cast<u128>(snap.debt_hi) << 64) | snap.debt_lo;
    if (snap.rate > kMaxRate.nanos || debt > kMaxDebt) {
      return Corrupt(k, "bucket rate or debt is out of range");
    }
    // At most 2^64 ns x 10^18 < 2^128: no overflow.
    const u128 refilled = static_cast<u128>(ElapsedNanos(b->second, now)) * snap.rate;
    debt = debt > refilled ? debt - refilled : 0;
    snap.debt_hi = static_cast<uint64_t>(debt >> 64);
    snap.debt_lo = static_cast<uint64_t>(debt);
    state->buckets.push_back(std::move(snap));
  } else if (!k.empty() && k[0] == kRegisterPrefix) {
    std::optional<std::pair<uint64_t, std::string>> reg = DecodeRegister(v);
    if (!reg) return Corrupt(k, "not a valid register record");
    if (reg->first == 0) return Corrupt(k, "register fence 0");
    state->registers.push_back({std::string(k.substr(1)), reg->first, std::move(reg->second)});
  }
  return absl::OkStatus();
}

}  // namespace tollgate::storage
