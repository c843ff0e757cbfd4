// Strict argument parsing for command handlers.
#ifndef TOLLGATE_SERVER_ARGS_H_
#define TOLLGATE_SERVER_ARGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::server {

// Parses a base-10 integer: optional '-', then digits; nothing else (no '+', spaces or
// overflow). nullopt if s is not such an integer.
std::optional<int64_t> ParseInt64(std::string_view s);

// Parses s as an integer in [lo, hi]. On failure returns nullopt and sets *error to
// "ERR <name> must be an integer in [lo, hi]".
std::optional<int64_t> ParseIntInRange(std::string_view s, std::string_view name, int64_t lo,
                                       int64_t hi, std::string* error);

// ASCII case-insensitive equality.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Lowercase ASCII copy.
std::string AsciiLower(std::string_view s);

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_ARGS_H_
