// Debian 12 builds Abseil with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), which
// does not convert from std::string_view. Our API speaks std::string_view; this bridges the two.
#ifndef TOLLGATE_CORE_ABSL_COMPAT_H_
#define TOLLGATE_CORE_ABSL_COMPAT_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace tollgate {

inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view SV(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace tollgate

#endif  // TOLLGATE_CORE_ABSL_COMPAT_H_
