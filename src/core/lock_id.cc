#include "core/lock_id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace tollgate::core {
namespace {

constexpr size_t kPoolBytes = 4096;
constexpr size_t kIdBytes = 16;

struct RandomPool {
  unsigned char bytes[kPoolBytes];
  size_t used = kPoolBytes;

  void Refill() {
    size_t got = 0;
    while (got < kPoolBytes) {
      ssize_t n = getrandom(bytes + got, kPoolBytes - got, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("tollgate: getrandom");
        std::abort();
      }
      got += static_cast<size_t>(n);
    }
    used = 0;
  }
};

}  // namespace

std::string NewLockId() {
  thread_local RandomPool pool;
  if (pool.used + kIdBytes > kPoolBytes) pool.Refill();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(kIdBytes * 2, '0');
  for (size_t i = 0; i < kIdBytes; ++i) {
    unsigned char b = pool.bytes[pool.used + i];
    id[2 * i] = kHex[b >> 4];
    id[2 * i + 1] = kHex[b & 15];
    pool.bytes[pool.used + i] = 0;  // never hand the same bytes out twice
  }
  pool.used += kIdBytes;
  return id;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

bool ConstantTimeEqualsSecret(std::string_view attempt, std::string_view secret) {
  // Walk the attempt (whose length the client knows anyway), reading the secret cyclically; the
  // length difference is folded in at the end rather than tested up front.
  unsigned char diff = attempt.size() != secret.size() ? 1 : 0;
  if (secret.empty()) return attempt.empty();
  for (size_t i = 0; i < attempt.size(); ++i) {
    diff |= static_cast<unsigned char>(attempt[i]) ^
            static_cast<unsigned char>(secret[i % secret.size()]);
  }
  return diff == 0;
}

bool IsLockIdFormat(std::string_view s) {
  if (s.size() != kIdBytes * 2) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string LockIdBase64Url(std::string_view lock_id) {
  if (!IsLockIdFormat(lock_id)) return "";
  auto nibble = [](char c) -> uint32_t {
    return c <= '9' ? static_cast<uint32_t>(c - '0') : static_cast<uint32_t>(c - 'a' + 10);
  };
  unsigned char bytes[kIdBytes];
  for (size_t i = 0; i < kIdBytes; ++i) {
    bytes[i] = static_cast<unsigned char>(nibble(lock_id[2 * i]) << 4 | nibble(lock_id[2 * i + 1]));
  }
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve(22);
  // 5 groups of 3 bytes -> 4 characters each, then the last byte -> 2 characters (no padding).
  size_t i = 0;
  for (; i + 3 <= kIdBytes; i += 3) {
    const uint32_t v = uint32_t{bytes[i]} << 16 | uint32_t{bytes[i + 1]} << 8 | bytes[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const uint32_t last = bytes[i];
  out.push_back(kAlphabet[last >> 2]);
  out.push_back(kAlphabet[(last & 3) << 4]);
  return out;
}

std::string LockIdHash(std::string_view lock_id) {
  const std::string b64 = LockIdBase64Url(lock_id);
  if (b64.empty()) return "";
  // JavaScript's `((h << k) - h + x) | 0` wraps at 32 bits exactly as uint32_t arithmetic does.
  uint32_t h1 = 0, h2 = 0, h3 = 0;
  for (char ch : b64) {
    const uint32_t c = static_cast<unsigned char>(ch);
    h1 = h1 * 31u + c;
    h2 = h2 * 127u + c * 3u;
    h3 = h3 * 2047u + c * 7u;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(24);
  for (uint32_t h : {h1, h2, h3}) {
    for (int shift = 28; shift >= 0; shift -= 4) out.push_back(kHex[(h >> shift) & 15]);
  }
  return out;
}

}  // namespace tollgate::core
