#include "server/acquire_options.h"

#include <chrono>

#include "server/args.h"

namespace tollgate::server {

std::optional<AcquireOptions> ParseAcquireOptions(std::span<const std::string> opts,
                                                  std::string_view command, std::string* error,
                                                  AcquireOptionSet accepted) {
  const bool times_ok = accepted == AcquireOptionSet::kWaitOwnerWithTimes;
  AcquireOptions out;
  bool have_wait = false;
  for (size_t i = 0; i < opts.size();) {
    const std::string& opt = opts[i];
    const bool is_wait = EqualsIgnoreCase(opt, "WAIT"), is_owner = EqualsIgnoreCase(opt, "OWNER");
    const bool is_times = times_ok && EqualsIgnoreCase(opt, "WITHTIMES");
    if (!is_wait && !is_owner && !is_times) {
      *error = "ERR unknown option '" + opt.substr(0, 64) + "' for '" + std::string(command) +
               "'; accepted: WAIT ms, OWNER label" + (times_ok ? ", WITHTIMES" : "");
      return std::nullopt;
    }
    if (is_times) {
      if (out.with_times) {
        *error = "ERR option WITHTIMES given more than once";
        return std::nullopt;
      }
      out.with_times = true;
      ++i;
      continue;
    }
    if (i + 1 >= opts.size()) {
      *error = is_wait ? "ERR WAIT needs a value: an integer in [0, 86400000]"
                       : "ERR OWNER needs a value: a label of 1 to 512 bytes";
      return std::nullopt;
    }
    if ((is_wait && have_wait) || (is_owner && out.owner)) {
      *error = "ERR option " + std::string(is_wait ? "WAIT" : "OWNER") + " given more than once";
      return std::nullopt;
    }
    if (is_wait) {
      auto wait = ParseIntInRange(opts[i + 1], "WAIT", 0, kMaxMs, error);
      if (!wait) return std::nullopt;
      out.wait = std::chrono::milliseconds(*wait);
      have_wait = true;
    } else {
      const std::string& label = opts[i + 1];
      if (label.empty() || label.size() > kMaxOwnerBytes) {
        *error = "ERR OWNER label must be 1 to 512 bytes long, got " +
                 std::to_string(label.size()) + " bytes";
        return std::nullopt;
      }
      out.owner = label;
    }
    i += 2;
  }
  return out;
}

}  // namespace tollgate::server
