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

// The one validator of lock ids (and permit ids) given by clients: exactly 32 characters, each
// 0-9 or a-f (lowercase), the form NewLockId returns.
bool IsLockIdFormat(std::string_view s);

// The 16 bytes of a lock id in base64url without padding: 22 characters of [A-Za-z0-9_-], the form
// in which @tollgate/syncguard hands lock ids to syncguard. Empty if !IsLockIdFormat(lock_id).
std::string LockIdBase64Url(std::string_view lock_id);

// A sanitised, non-secret handle of a lock id that may be shown where the lock id must not be
// (LOCK.INFO): syncguard's hashKey of LockIdBase64Url(lock_id), i.e. over the 22 character codes c:
//   h1 = h1 * 31 + c,  h2 = h2 * 127 + 3c,  h3 = h3 * 2047 + 7c   (each mod 2^32, from 0),
// then h1, h2, h3 as 8 lowercase hex digits each: 24 characters. Not a cryptographic hash (96
// bits, invertible in principle for a short input): it names a lease, it does not protect one.
// Empty if !IsLockIdFormat(lock_id).
std::string LockIdHash(std::string_view lock_id);

}  // namespace tollgate::core

#endif  // TOLLGATE_CORE_LOCK_ID_H_
