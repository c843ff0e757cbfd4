// Byte layout of the records tollgate keeps in its store. Hand-written because it is a few fixed
// fields; a general serializer (protobuf) would add a code generator for no gain.
//
//   key "L" + lease key     -> u8 version(2) | u64 fence | i64 wall expiry ns |
//                              i64 wall acquired_at ns | u8 flags (bit 0: indexed; others 0) |
//                              u8 id len | id | u8 has owner | [u32 owner len | owner]
//                              (version 1, still read and written for a lease without acquired_at:
//                              the same without acquired_at and flags; it reads as not indexed)
//   key "R" + resource      -> u8 version(1) | u64 fence | value bytes
//   key "P" + u16 semaphore key length + semaphore key + permit id
//                           -> u8 version(1) | u32 slot | u32 limit | u64 fence | i64 wall expiry
//                           ns |
//                              u8 has owner | [u32 owner len | owner]
//   key "M:fence"           -> u64 highest fence ever issued
//   key "B" + u16 table length + table + bucket key
//                           -> u8 version(1) | u64 debt hi | u64 debt lo | u64 rate | i64 wall ns
// Integers are little-endian.
#ifndef TOLLGATE_STORAGE_RECORD_CODEC_H_
#define TOLLGATE_STORAGE_RECORD_CODEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "tollgate/journal.h"
#include "tollgate/limiter.h"

namespace tollgate::storage {

inline constexpr char kLeasePrefix = 'L';
inline constexpr char kRegisterPrefix = 'R';
inline constexpr char kPermitPrefix = 'P';
inline constexpr std::string_view kFenceKey = "M:fence";
inline constexpr char kBucketPrefix = 'B';

std::string LeaseKey(std::string_view key);
std::string RegisterKey(std::string_view resource);

// Writes at most the first 255 bytes of lease.lock_id (tollgate's lock ids are 32 bytes). Writes
// version 2 when lease.acquired_at is set, else version 1 (which drops lease.indexed: a lease
// without acquired_at comes from a version 1 record, which is never indexed), so every value has
// exactly one encoding.
std::string EncodeLease(const StoredLease& lease);
// Reads versions 1 and 2. nullopt if the bytes are not a valid lease record.
std::optional<StoredLease> DecodeLease(std::string_view bytes);

// REQUIRES: key.size() <= 65535 (semaphore keys are at most kMaxKeyBytes).
std::string PermitKey(std::string_view key, std::string_view permit_id);
// Splits a permit record's key (without its prefix byte) into semaphore key and permit id.
// nullopt if malformed.
std::optional<std::pair<std::string, std::string>> DecodePermitKey(std::string_view key);
// REQUIRES: 0 <= slot, limit < 2^32 (they are at most kMaxSemaphoreLimit).
std::string EncodePermit(const StoredPermit& permit);
// nullopt if the bytes are not a valid permit record.
std::optional<StoredPermit> DecodePermit(std::string_view bytes);

std::string EncodeRegister(uint64_t fence, std::string_view value);
// nullopt if the bytes are not a valid register record.
std::optional<std::pair<uint64_t, std::string>> DecodeRegister(std::string_view bytes);

// REQUIRES: table.size() <= 65535 (tables are "t" or "p:<policy>/<layer>/<key template>").
std::string BucketKey(std::string_view table, std::string_view key);
std::string EncodeBucket(const BucketSnapshot& s, WallTime at);
// Decodes a bucket record (key without its prefix byte, and value). nullopt if malformed.
std::optional<std::pair<BucketSnapshot, WallTime>> DecodeBucket(std::string_view key,
                                                                std::string_view value);

std::string EncodeU64(uint64_t v);
std::optional<uint64_t> DecodeU64(std::string_view bytes);

}  // namespace tollgate::storage

#endif  // TOLLGATE_STORAGE_RECORD_CODEC_H_
