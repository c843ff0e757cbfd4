// Redis Cluster key slots: CRC16 (XMODEM) of the key's hash tag, modulo 16384, exactly as Redis
// computes it (https://redis.io/docs/reference/cluster-spec/#key-distribution-model). Internal to
// the Redis backend; exposed here for its tests.
#ifndef TOLLGATE_BACKENDS_REDIS_CLUSTER_SLOT_H_
#define TOLLGATE_BACKENDS_REDIS_CLUSTER_SLOT_H_

#include <cstdint>
#include <string_view>

namespace tollgate::redis {

inline constexpr int kClusterSlots = 16384;

// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection): "123456789" -> 0x31C3.
uint16_t Crc16(std::string_view data);

// The cluster slot of `key`, in [0, kClusterSlots): if the key has a '{' followed (later) by a '}'
// with at least one byte between the first '{' and the first '}' after it, only those bytes are
// hashed (the hash tag); otherwise the whole key is.
int KeySlot(std::string_view key);

}  // namespace tollgate::redis

#endif  // TOLLGATE_BACKENDS_REDIS_CLUSTER_SLOT_H_
