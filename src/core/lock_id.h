// Lock ids: unguessable bearer tokens that prove lease ownership.
#ifndef TOLLGATE_CORE_LOCK_ID_H_
#define TOLLGATE_CORE_LOCK_ID_H_

#include <string>
#include <string_view>

namespace tollgate::core {

// Returns 32 lowercase hex characters encoding 128 bits from the kernel CSPRNG (getrandom(2)),
// drawn through a per-thread buffer so one syscall serves many ids. Aborts the process if the
// kernel cannot supply randomness (a lease id must never be predictable).
std::string NewLockId();

// Compares in time independent of where the inputs first differ. Returns at once when the sizes
// differ: use it where the length is public (lock ids are always 32 characters).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// Compares a client's attempt with a secret (a password) in time that depends only on the
// attempt's length: neither where they differ nor the secret's length shows in the timing.
bool ConstantTimeEqualsSecret(std::string_view attempt, std::string_view secret);

}  // namespace tollgate::core

#endif  // TOLLGATE_CORE_LOCK_ID_H_
