// Invariant checks for the simulator's replay-log parser (ParseReplayLog, include/tollgate/
// simulate.h), shared by the libFuzzer target (fuzz/replay_log_fuzz.cc) and the corpus regression
// test (src/sim/replay_log_corpus_test.cc). Header-only.

#ifndef TOLLGATE_FUZZ_REPLAY_LOG_CHECK_H_
#define TOLLGATE_FUZZ_REPLAY_LOG_CHECK_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/absl_compat.h"
#include "fuzz/utf8.h"
#include "nlohmann/json.hpp"
#include "tollgate/limiter.h"
#include "tollgate/simulate.h"

namespace tollgate::fuzz {
namespace replay_log_internal {

inline constexpr std::string_view kSource = "fuzz.log";

using Fields = std::vector<std::pair<std::string, std::string>>;

inline Fields Sorted(Fields f) {
  std::sort(f.begin(), f.end());
  return f;
}

// Same times, costs and fields (in any order); line numbers are not compared.
inline bool SameRows(const std::vector<sim::ReplayRow>& a, const std::vector<sim::ReplayRow>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].t != b[i].t || a[i].cost != b[i].cost || Sorted(a[i].fields) != Sorted(b[i].fields)) {
      return false;
    }
  }
  return true;
}

// "fuzz.log:LINE:COL: what" with 1 <= LINE <= lines and COL >= 1.
inline bool WellFormedError(std::string_view msg, size_t lines) {
  if (msg.rfind(std::string(kSource) + ":", 0) != 0) return false;
  msg.remove_prefix(kSource.size() + 1);
  uint64_t nums[2] = {0, 0};
  for (uint64_t& n : nums) {
    const size_t digits = msg.find_first_not_of("0123456789");
    if (digits == 0 || digits == std::string_view::npos || digits > 9 || msg[digits] != ':') {
      return false;
    }
    for (char c : msg.substr(0, digits)) n = n * 10 + static_cast<uint64_t>(c - '0');
    msg.remove_prefix(digits + 1);
  }
  return nums[0] >= 1 && nums[0] <= lines && nums[1] >= 1 && msg.rfind(' ', 0) == 0;
}

// Shortest text that reads back as exactly `v`.
inline std::string DoubleText(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// The rows written back as JSON lines; nullopt if a value is not valid UTF-8 (JSON cannot carry
// it).
inline std::optional<std::string> EmitJsonLines(const std::vector<sim::ReplayRow>& rows) {
  std::string out;
  for (const sim::ReplayRow& r : rows) {
    nlohmann::json j = nlohmann::json::object();
    j["timestamp"] = r.t;
    if (r.cost) j["cost"] = r.cost->ToString();
    for (const auto& [k, v] : r.fields) {
      if (!IsValidUtf8(v)) return std::nullopt;
      j[k] = v;
    }
    out += j.dump() + "\n";
  }
  return out;
}

// The rows written back as CSV (every value quoted); nullopt if a value cannot be written (empty
// means absent in CSV; line breaks end a row).
inline std::optional<std::string> EmitCsv(const std::vector<sim::ReplayRow>& rows) {
  std::set<std::string> names;
  for (const sim::ReplayRow& r : rows) {
    for (const auto& [k, v] : r.fields) {
      if (v.empty() || v.find_first_of("\r\n") != std::string::npos) return std::nullopt;
      names.insert(k);
    }
  }
  std::string out = "timestamp,cost";
  for (const std::string& n : names) out += "," + n;
  out += "\n";
  for (const sim::ReplayRow& r : rows) {
    out += DoubleText(r.t) + "," + (r.cost ? r.cost->ToString() : "");
    for (const std::string& n : names) {
      out += ",";
      for (const auto& [k, v] : r.fields) {
        if (k != n) continue;
        out += '"';
        for (char c : v) out += c == '"' ? std::string("\"\"") : std::string(1, c);
        out += '"';
      }
    }
    out += "\n";
  }
  return out;
}

// Rows as ParseReplayLog documents them.
inline std::string CheckRows(const std::vector<sim::ReplayRow>& rows, size_t lines) {
  int last_line = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const sim::ReplayRow& r = rows[i];
    if (!std::isfinite(r.t) || r.t < 0 || (i == 0 && r.t != 0) || (i > 0 && r.t < rows[i - 1].t)) {
      return "times are not relative, finite and non-decreasing";
    }
    if (r.line <= last_line || static_cast<size_t>(r.line) > lines) return "bad line numbers";
    last_line = r.line;
    if (r.cost && (r.cost->nanos == 0 || kMaxCost < *r.cost)) return "cost out of range";
    std::set<std::string> seen;
    for (const auto& [k, v] : r.fields) {
      if (!IsFieldName(k) || !seen.insert(k).second) return "bad or repeated field name " + k;
    }
  }
  return "";
}

}  // namespace replay_log_internal

// Runs one fuzzer input and returns a description of the first violated invariant, or "" when all
// hold. Byte 0 selects the format (auto, JSON lines, CSV); the rest is the log. Checked:
//   * the result is rows or InvalidArgument "fuzz.log:LINE:COL: ..." with LINE a line of the log
//     (never another code, which would mean an unexpected exception was caught);
//   * rows start at time 0, are non-decreasing and finite, carry increasing line numbers, costs in
//     (0, kMaxCost] and unique field names that are field names;
//   * the rows written back as JSON lines, and as CSV, parse to the same rows.
inline std::string CheckReplayLog(const uint8_t* data, size_t size) {
  using namespace replay_log_internal;  // NOLINT(build/namespaces): local to this function
  if (size < 1) return "";
  static constexpr sim::ReplayFormat kFormats[] = {
      sim::ReplayFormat::kAuto, sim::ReplayFormat::kJsonLines, sim::ReplayFormat::kCsv};
  const sim::ReplayFormat format = kFormats[data[0] % 3];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t lines = 1 + static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));

  const absl::StatusOr<std::vector<sim::ReplayRow>> rows =
      sim::ParseReplayLog(text, kSource, format);
  if (!rows.ok()) {
    if (rows.status().code() != absl::StatusCode::kInvalidArgument) {
      return "error is not InvalidArgument: " + rows.status().ToString();
    }
    if (!WellFormedError(SV(rows.status().message()), lines)) {
      return "error does not name the line and column: " + rows.status().ToString();
    }
    return "";
  }
  if (std::string failure = CheckRows(*rows, lines); !failure.empty()) return failure;

  if (const std::optional<std::string> json = EmitJsonLines(*rows)) {
    const auto back = sim::ParseReplayLog(*json, kSource, sim::ReplayFormat::kJsonLines);
    if (!back.ok()) return "rows as JSON lines do not parse: " + back.status().ToString();
    if (!SameRows(*back, *rows)) return "rows as JSON lines parse to different rows";
  }
  if (const std::optional<std::string> csv = EmitCsv(*rows)) {
    const auto back = sim::ParseReplayLog(*csv, kSource, sim::ReplayFormat::kCsv);
    if (!back.ok()) return "rows as CSV do not parse: " + back.status().ToString();
    if (!SameRows(*back, *rows)) return "rows as CSV parse to different rows";
  }
  return "";
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_REPLAY_LOG_CHECK_H_
