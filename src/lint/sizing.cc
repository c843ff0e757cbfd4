#include "lint/sizing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tollgate::lint {

double ToDouble(Decimal d) {
  return static_cast<double>(d.nanos) / static_cast<double>(Decimal::kScale);
}

std::string Num(double v) {
  if (!std::isfinite(v)) return v > 0 ? "inf" : "nan";
  char buf[64];
  const double a = std::fabs(v);
  if (a >= 1e15 || (a == std::floor(a) && a < 1e15)) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  std::snprintf(buf, sizeof buf, a < 0.001 ? "%.9f" : "%.3f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string Secs(double seconds) {
  if (seconds >= 7200) return Num(std::round(seconds / 360) / 10) + " h";
  if (seconds >= 180) return Num(std::round(seconds / 6) / 10) + " min";
  return Num(seconds) + " s";
}

std::vector<std::string> TemplateFields(std::string_view t) {
  std::vector<std::string> out;
  size_t i = 0;
  while ((i = t.find('{', i)) != std::string_view::npos) {
    const size_t j = t.find('}', i);
    if (j == std::string_view::npos) break;
    std::string f(t.substr(i + 1, j - i - 1));
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(std::move(f));
    i = j + 1;
  }
  return out;
}

Deployment::Deployment(const PolicySpec& spec, const PolicyExpectations* expect)
    : spec_(spec), expect_(expect) {
  if (expect != nullptr && !expect->type_field.empty()) {
    type_field_ = expect->type_field;
  } else if (!spec.cost.by.empty()) {
    type_field_ = spec.cost.by;
  } else {
    type_field_ = "type";
  }
}

std::optional<double> Deployment::Cardinality(std::string_view field) const {
  if (expect_ != nullptr) {
    for (const auto& [name, n] : expect_->fields) {
      if (name == field) return static_cast<double>(n);
    }
    if (field == "user" && expect_->users) return static_cast<double>(*expect_->users);
    if (field == "ip" && expect_->ips) return static_cast<double>(*expect_->ips);
    if (field == type_field_ && !expect_->messages.empty()) {
      return static_cast<double>(expect_->messages.size());
    }
  }
  if (field == type_field_ && field == spec_.cost.by && !spec_.cost.values.empty()) {
    // Types outside the table share the default cost but still get their own buckets; the
    // table is the best available count.
    return static_cast<double>(spec_.cost.values.size());
  }
  return std::nullopt;
}

std::optional<double> Deployment::Buckets(const std::vector<std::string>& fields) const {
  double n = 1;
  for (const std::string& f : fields) {
    std::optional<double> c = Cardinality(f);
    if (!c) return std::nullopt;
    n *= *c;
  }
  return n;
}

Decimal Deployment::CostOf(std::string_view type) const {
  if (spec_.cost.by == type_field_) {
    for (const auto& [value, cost] : spec_.cost.values) {
      if (value == type) return cost;
    }
  }
  return spec_.cost.default_cost;
}

std::optional<double> Deployment::users() const {
  if (expect_ != nullptr && expect_->users) return static_cast<double>(*expect_->users);
  return Cardinality("user");
}

}  // namespace tollgate::lint
