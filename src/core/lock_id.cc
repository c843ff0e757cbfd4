#include "core/lock_id.h"

#include <sys/random.h>

#include <cerrno>
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

}  // namespace tollgate::core
