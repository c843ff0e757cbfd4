// Strict UTF-8 decoding for the fuzz checks that write parsed strings back out as YAML or JSON
// (both formats carry only valid Unicode text).

#ifndef TOLLGATE_FUZZ_UTF8_H_
#define TOLLGATE_FUZZ_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tollgate::fuzz {

// Decodes one code point from the front of *s and removes it; nullopt (and *s unchanged) if *s is
// empty or starts with a malformed sequence (overlong, surrogate, above U+10FFFF, truncated).
inline std::optional<uint32_t> NextCodePoint(std::string_view* s) {
  if (s->empty()) return std::nullopt;
  const auto byte = [&](size_t i) { return static_cast<unsigned char>((*s)[i]); };
  const unsigned char b0 = byte(0);
  size_t n = 0;
  uint32_t cp = 0, min = 0;
  if (b0 < 0x80) {
    n = 1, cp = b0;
  } else if ((b0 & 0xe0) == 0xc0) {
    n = 2, cp = b0 & 0x1f, min = 0x80;
  } else if ((b0 & 0xf0) == 0xe0) {
    n = 3, cp = b0 & 0x0f, min = 0x800;
  } else if ((b0 & 0xf8) == 0xf0) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return std::nullopt;
  }
  if (s->size() < n) return std::nullopt;
  for (size_t i = 1; i < n; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (byte(i) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return std::nullopt;
  s->remove_prefix(n);
  return cp;
}

inline bool IsValidUtf8(std::string_view s) {
  while (!s.empty()) {
    if (!NextCodePoint(&s)) return false;
  }
  return true;
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_UTF8_H_
