#include "storage/record_codec.h"

#include <cstring>

namespace tollgate::storage {
namespace {

constexpr uint8_t kVersion = 1;
// Lease records: version 2 adds acquired_at and flags.
constexpr uint8_t kLeaseVersionV1 = 1;
constexpr uint8_t kLeaseVersion = 2;
constexpr uint8_t kLeaseIndexed = 1;  // flags bit 0: StoredLease::indexed

void PutFixed(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads `bytes` little-endian bytes from the front of *in; false if too short.
bool GetFixed(std::string_view* in, int bytes, uint64_t* v) {
  if (in->size() < static_cast<size_t>(bytes)) return false;
  *v = 0;
  for (int i = 0; i < bytes; ++i) {
    *v |= static_cast<uint64_t>(static_cast<unsigned char>((*in)[i])) << (8 * i);
  }
  in->remove_prefix(bytes);
  return true;
}

// The owner field shared by lease and permit records: u8 has owner | [u32 len | owner].
void PutOwner(std::string* out, const std::optional<std::string>& owner) {
  out->push_back(owner ? 1 : 0);
  if (owner) {
    PutFixed(out, owner->size(), 4);
    out->append(*owner);
  }
}

// Reads the owner field, which must end the record. False if malformed.
bool GetOwner(std::string_view in, std::optional<std::string>* owner) {
  uint64_t has_owner;
  if (!GetFixed(&in, 1, &has_owner) || has_owner > 1) return false;
  if (has_owner) {
    uint64_t owner_len;
    if (!GetFixed(&in, 4, &owner_len) || in.size() != owner_len) return false;
    *owner = std::string(in);
  } else if (!in.empty()) {
    return false;
  }
  return true;
}

int64_t WallNanos(WallTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

WallTime FromWallNanos(uint64_t ns) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(
      std::chrono::nanoseconds(static_cast<int64_t>(ns))));
}

}  // namespace

std::string LeaseKey(std::string_view key) {
  std::string k(1, kLeasePrefix);
  k.append(key);
  return k;
}

std::string RegisterKey(std::string_view resource) {
  std::string k(1, kRegisterPrefix);
  k.append(resource);
  return k;
}

std::string EncodeLease(const StoredLease& lease) {
  std::string out;
  out.reserve(48 + lease.lock_id.size() + (lease.owner ? lease.owner->size() : 0));
  out.push_back(static_cast<char>(lease.acquired_at ? kLeaseVersion : kLeaseVersionV1));
  PutFixed(&out, lease.fence, 8);
  PutFixed(&out, static_cast<uint64_t>(WallNanos(lease.expiry)), 8);
  if (lease.acquired_at) {
    PutFixed(&out, static_cast<uint64_t>(WallNanos(*lease.acquired_at)), 8);
    out.push_back(static_cast<char>(lease.indexed ? kLeaseIndexed : 0));
  }
  // The length byte and the bytes written must agree, or the record would not decode.
  const std::string_view id = std::string_view(lease.lock_id).substr(0, 255);
  PutFixed(&out, id.size(), 1);
  out.append(id);
  PutOwner(&out, lease.owner);
  return out;
}

std::optional<StoredLease> DecodeLease(std::string_view in) {
  uint64_t version, fence, ns, id_len;
  if (!GetFixed(&in, 1, &version) || (version != kLeaseVersionV1 && version != kLeaseVersion)) {
    return std::nullopt;
  }
  if (!GetFixed(&in, 8, &fence) || !GetFixed(&in, 8, &ns)) return std::nullopt;
  StoredLease lease;
  if (version == kLeaseVersion) {
    uint64_t acquired_ns, flags;
    if (!GetFixed(&in, 8, &acquired_ns) || !GetFixed(&in, 1, &flags) || (flags & ~kLeaseIndexed)) {
      return std::nullopt;
    }
    lease.acquired_at = FromWallNanos(acquired_ns);
    lease.indexed = (flags & kLeaseIndexed) != 0;
  }
  if (!GetFixed(&in, 1, &id_len) || in.size() < id_len) return std::nullopt;
  lease.fence = fence;
  lease.expiry = FromWallNanos(ns);
  lease.lock_id = std::string(in.substr(0, id_len));
  in.remove_prefix(id_len);
  if (!GetOwner(in, &lease.owner)) return std::nullopt;
  return lease;
}

std::string PermitKey(std::string_view key, std::string_view permit_id) {
  std::string k(1, kPermitPrefix);
  PutFixed(&k, key.size(), 2);
  k.append(key);
  k.append(permit_id);
  return k;
}

std::optional<std::pair<std::string, std::string>> DecodePermitKey(std::string_view key) {
  uint64_t len;
  if (!GetFixed(&key, 2, &len) || key.size() < len) return std::nullopt;
  return std::make_pair(std::string(key.substr(0, len)), std::string(key.substr(len)));
}

std::string EncodePermit(const StoredPermit& permit) {
  std::string out;
  out.reserve(30 + (permit.owner ? permit.owner->size() : 0));
  out.push_back(static_cast<char>(kVersion));
  PutFixed(&out, static_cast<uint64_t>(permit.slot), 4);
  PutFixed(&out, static_cast<uint64_t>(permit.limit), 4);
  PutFixed(&out, permit.fence, 8);
  PutFixed(&out, static_cast<uint64_t>(WallNanos(permit.expiry)), 8);
  PutOwner(&out, permit.owner);
  return out;
}

std::optional<StoredPermit> DecodePermit(std::string_view in) {
  uint64_t version, slot, limit, fence, ns;
  if (!GetFixed(&in, 1, &version) || version != kVersion || !GetFixed(&in, 4, &slot) ||
      !GetFixed(&in, 4, &limit) || !GetFixed(&in, 8, &fence) || !GetFixed(&in, 8, &ns)) {
    return std::nullopt;
  }
  StoredPermit p;
  p.slot = static_cast<int64_t>(slot);
  p.limit = static_cast<int64_t>(limit);
  p.fence = fence;
  p.expiry = FromWallNanos(ns);
  if (!GetOwner(in, &p.owner)) return std::nullopt;
  return p;
}

std::string EncodeRegister(uint64_t fence, std::string_view value) {
  std::string out;
  out.reserve(9 + value.size());
  out.push_back(static_cast<char>(kVersion));
  PutFixed(&out, fence, 8);
  out.append(value);
  return out;
}

std::optional<std::pair<uint64_t, std::string>> DecodeRegister(std::string_view in) {
  uint64_t version, fence;
  if (!GetFixed(&in, 1, &version) || version != kVersion || !GetFixed(&in, 8, &fence)) {
    return std::nullopt;
  }
  return std::make_pair(fence, std::string(in));
}

std::string BucketKey(std::string_view table, std::string_view key) {
  std::string k(1, kBucketPrefix);
  PutFixed(&k, table.size(), 2);
  k.append(table);
  k.append(key);
  return k;
}

std::string EncodeBucket(const BucketSnapshot& s, WallTime at) {
  std::string out;
  out.push_back(static_cast<char>(kVersion));
  PutFixed(&out, s.debt_hi, 8);
  PutFixed(&out, s.debt_lo, 8);
  PutFixed(&out, s.rate, 8);
  PutFixed(&out,
           static_cast<uint64_t>(
               std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count()),
           8);
  return out;
}

std::optional<std::pair<BucketSnapshot, WallTime>> DecodeBucket(std::string_view key,
                                                                std::string_view value) {
  uint64_t table_len, version, ns;
  BucketSnapshot s;
  if (!GetFixed(&key, 2, &table_len) || key.size() < table_len) return std::nullopt;
  s.table = std::string(key.substr(0, table_len));
  s.key = std::string(key.substr(table_len));
  if (!GetFixed(&value, 1, &version) || version != kVersion || !GetFixed(&value, 8, &s.debt_hi) ||
      !GetFixed(&value, 8, &s.debt_lo) || !GetFixed(&value, 8, &s.rate) ||
      !GetFixed(&value, 8, &ns) || !value.empty()) {
    return std::nullopt;
  }
  WallTime at(std::chrono::duration_cast<WallTime::duration>(
      std::chrono::nanoseconds(static_cast<int64_t>(ns))));
  return std::make_pair(std::move(s), at);
}

std::string EncodeU64(uint64_t v) {
  std::string out;
  PutFixed(&out, v, 8);
  return out;
}

std::optional<uint64_t> DecodeU64(std::string_view in) {
  uint64_t v;
  if (in.size() != 8 || !GetFixed(&in, 8, &v)) return std::nullopt;
  return v;
}

}  // namespace tollgate::storage
