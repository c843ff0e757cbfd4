// Replayed request logs (JSON lines or CSV).
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "nlohmann/json.hpp"
#include "tollgate/limiter.h"
#include "tollgate/simulate.h"

namespace tollgate::sim {
namespace {

class LogParser {
 public:
  explicit LogParser(std::string_view source) : source_(source) {}

  absl::Status Error(int line, int col, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(AV(source_), ":", line, ":", col, ": ", AV(what)));
  }

  absl::StatusOr<double> Timestamp(std::string_view text, int line, int col) {
    std::string s(text);
    char* end = nullptr;
    const double v = s.empty() ? NAN : std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v < 0) {
      return Error(line, col,
                   absl::StrCat("timestamp must be a non-negative number of seconds, got '",
                                AV(text.substr(0, 64)), "'"));
    }
    return v;
  }

  // Applies the ordering rule and makes the time relative to the first row.
  absl::Status Place(ReplayRow& row, double t, int col) {
    if (!first_) {
      first_ = t;
    } else if (t < last_) {
      return Error(row.line, col,
                   absl::StrCat("timestamp ", t, " is before the previous row's ", last_,
                                " (rows must be in time order)"));
    }
    last_ = t;
    row.t = t - *first_;
    return absl::OkStatus();
  }

  absl::StatusOr<Decimal> Cost(std::string_view text, int line, int col) {
    auto c = Decimal::ParsePositive(text, "cost", kMaxCost);
    if (!c.ok()) return Error(line, col, SV(c.status().message()));
    return *c;
  }

 private:
  std::string_view source_;
  std::optional<double> first_;
  double last_ = 0;
};

// Splits one CSV line into fields (RFC 4180 quoting within the line). Returns the 1-based start
// column of each field in `cols`.
absl::Status SplitCsv(std::string_view line, std::vector<std::string>* out, std::vector<int>* cols,
                      int* bad_col) {
  out->clear();
  cols->clear();
  size_t i = 0;
  while (true) {
    cols->push_back(static_cast<int>(i) + 1);
    std::string field;
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        if (i >= line.size()) {
          *bad_col = cols->back();
          return absl::InvalidArgumentError("unterminated quoted field");
        }
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += line[i++];
      }
      if (i < line.size() && line[i] != ',') {
        *bad_col = static_cast<int>(i) + 1;
        return absl::InvalidArgumentError("unexpected character after a quoted field");
      }
    } else {
      while (i < line.size() && line[i] != ',') field += line[i++];
    }
    out->push_back(std::move(field));
    if (i >= line.size()) break;
    ++i;  // the comma
  }
  return absl::OkStatus();
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view l = text.substr(pos, nl - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back(l);
    pos = nl + 1;
  }
  return lines;
}

bool Blank(std::string_view l) { return l.find_first_not_of(" \t") == std::string_view::npos; }

absl::StatusOr<std::vector<ReplayRow>> ParseCsv(const std::vector<std::string_view>& lines,
                                                LogParser& p) {
  std::vector<ReplayRow> rows;
  std::vector<std::string> header, cells;
  std::vector<int> header_cols, cols;
  int ts = -1, cost = -1;
  bool have_header = false;
  for (size_t n = 0; n < lines.size(); ++n) {
    const int line = static_cast<int>(n) + 1;
    if (Blank(lines[n])) continue;
    int bad_col = 1;
    if (absl::Status st = SplitCsv(lines[n], have_header ? &cells : &header,
                                   have_header ? &cols : &header_cols, &bad_col);
        !st.ok()) {
      return p.Error(line, bad_col, SV(st.message()));
    }
    if (!have_header) {
      have_header = true;
      absl::flat_hash_set<std::string> seen;
      for (size_t c = 0; c < header.size(); ++c) {
        const std::string& h = header[c];
        if (!seen.insert(h).second) {
          return p.Error(line, header_cols[c], absl::StrCat("duplicate column '", h, "'"));
        }
        if (h == "timestamp") {
          ts = static_cast<int>(c);
        } else if (h == "cost") {
          cost = static_cast<int>(c);
        } else if (!IsFieldName(h)) {
          return p.Error(line, header_cols[c],
                         absl::StrCat("column '", h.substr(0, 64),
                                      "' is not a field name ([a-z_][a-z0-9_]*, at most 64)"));
        }
      }
      if (ts < 0) return p.Error(line, 1, "the header has no 'timestamp' column");
      continue;
    }
    if (cells.size() != header.size()) {
      const int col = cells.size() > header.size() ? cols[header.size()]
                                                   : static_cast<int>(lines[n].size()) + 1;
      return p.Error(line, col,
                     absl::StrCat("expected ", header.size(), " columns, got ", cells.size()));
    }
    ReplayRow row;
    row.line = line;
    auto t = p.Timestamp(cells[ts], line, cols[ts]);
    if (!t.ok()) return t.status();
    if (absl::Status st = p.Place(row, *t, cols[ts]); !st.ok()) return st;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (static_cast<int>(c) == ts) continue;
      if (static_cast<int>(c) == cost) {
        if (cells[c].empty()) continue;  // the policy's cost table
        auto v = p.Cost(cells[c], line, cols[c]);
        if (!v.ok()) return v.status();
        row.cost = *v;
        continue;
      }
      if (cells[c].empty()) continue;  // an absent field
      row.fields.emplace_back(header[c], std::move(cells[c]));
    }
    rows.push_back(std::move(row));
  }
  if (!have_header) return p.Error(1, 1, "empty log: expected a header row");
  return rows;
}

int KeyColumn(std::string_view line, const std::string& key) {
  const size_t at = line.find(absl::StrCat("\"", key, "\""));
  return at == std::string_view::npos ? 1 : static_cast<int>(at) + 1;
}

absl::StatusOr<std::vector<ReplayRow>> ParseJsonLines(const std::vector<std::string_view>& lines,
                                                      LogParser& p) {
  std::vector<ReplayRow> rows;
  for (size_t n = 0; n < lines.size(); ++n) {
    const int line = static_cast<int>(n) + 1;
    const std::string_view l = lines[n];
    if (Blank(l)) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(l);
    } catch (const nlohmann::json::parse_error& e) {
      return p.Error(line, static_cast<int>(std::max<size_t>(e.byte, 1)),
                     absl::StrCat("not valid JSON: ", e.what()));
    } catch (const std::exception& e) {
      return p.Error(line, 1, absl::StrCat("not valid JSON: ", e.what()));
    }
    if (!j.is_object()) return p.Error(line, 1, "expected a JSON object");
    ReplayRow row;
    row.line = line;
    auto ts = j.find("timestamp");
    if (ts == j.end()) return p.Error(line, 1, "missing key 'timestamp'");
    const int ts_col = KeyColumn(l, "timestamp");
    if (!ts->is_number() || !std::isfinite(ts->get<double>()) || ts->get<double>() < 0) {
      return p.Error(line, ts_col,
                     absl::StrCat("timestamp must be a non-negative number of seconds, got ",
                                  ts->dump().substr(0, 64)));
    }
    if (absl::Status st = p.Place(row, ts->get<double>(), ts_col); !st.ok()) return st;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& key = it.key();
      if (key == "timestamp") continue;
      const int col = KeyColumn(l, key);
      if (key == "cost") {
        std::string text;
        if (it->is_string()) {
          text = it->get<std::string>();
        } else if (it->is_number_integer() || it->is_number_unsigned()) {
          text = it->dump();
        } else if (it->is_number_float()) {
          // Shortest round-trip text ("0.5"); exponents are rejected by the decimal parser.
          text = it->dump();
        } else {
          return p.Error(line, col,
                         absl::StrCat("cost must be a number, got ", it->dump().substr(0, 64)));
        }
        auto c = p.Cost(text, line, col);
        if (!c.ok()) return c.status();
        row.cost = *c;
        continue;
      }
      if (!IsFieldName(key)) {
        return p.Error(line, col,
                       absl::StrCat("key '", key.substr(0, 64),
                                    "' is not a field name ([a-z_][a-z0-9_]*, at most 64)"));
      }
      if (it->is_string()) {
        row.fields.emplace_back(key, it->get<std::string>());
      } else if (it->is_number_integer() || it->is_number_unsigned()) {
        row.fields.emplace_back(key, it->dump());
      } else if (!it->is_null()) {
        return p.Error(line, col,
                       absl::StrCat("field '", key, "' must be a string or an integer, got ",
                                    it->dump().substr(0, 64)));
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

absl::StatusOr<std::vector<ReplayRow>> ParseReplayLog(std::string_view text,
                                                      std::string_view source,
                                                      ReplayFormat format) {
  try {
    const std::vector<std::string_view> lines = Lines(text);
    if (format == ReplayFormat::kAuto) {
      const size_t first = text.find_first_not_of(" \t\r\n");
      format = first != std::string_view::npos && text[first] == '{' ? ReplayFormat::kJsonLines
                                                                     : ReplayFormat::kCsv;
    }
    LogParser p(source);
    return format == ReplayFormat::kCsv ? ParseCsv(lines, p) : ParseJsonLines(lines, p);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(AV(source), ": ", e.what()));
  }
}

}  // namespace tollgate::sim
