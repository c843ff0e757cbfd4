// Invariant checks for the policy YAML parser (ParsePolicyYaml, include/tollgate/policy_config.h),
// shared by the libFuzzer target (fuzz/policy_yaml_fuzz.cc) and the corpus regression test
// (src/config/policy_yaml_corpus_test.cc). Header-only.

#ifndef TOLLGATE_FUZZ_POLICY_YAML_CHECK_H_
#define TOLLGATE_FUZZ_POLICY_YAML_CHECK_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/absl_compat.h"
#include "fuzz/utf8.h"
#include "tollgate/limiter.h"
#include "tollgate/policy_config.h"

namespace tollgate::fuzz {
namespace policy_yaml_internal {

inline constexpr std::string_view kSource = "fuzz.yaml";

inline bool SameSpecs(const std::vector<PolicySpec>& a, const std::vector<PolicySpec>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const PolicySpec &x = a[i], &y = b[i];
    if (x.name != y.name || x.layers.size() != y.layers.size() || x.cost.by != y.cost.by ||
        x.cost.values != y.cost.values || x.cost.default_cost != y.cost.default_cost) {
      return false;
    }
    for (size_t j = 0; j < x.layers.size(); ++j) {
      const LayerSpec &l = x.layers[j], &m = y.layers[j];
      if (l.name != m.name || l.key_template != m.key_template ||
          l.params.capacity != m.params.capacity || l.params.rate != m.params.rate ||
          l.shadow != m.shadow || l.max_buckets != m.max_buckets || l.overflow != m.overflow) {
        return false;
      }
    }
  }
  return true;
}

// `s` as a YAML double-quoted scalar: printable ASCII as is, everything else escaped by code
// point. nullopt if `s` is not valid UTF-8 (yaml-cpp never produces that).
inline std::optional<std::string> Quote(std::string_view s) {
  std::string out = "\"";
  while (!s.empty()) {
    const std::optional<uint32_t> cp = NextCodePoint(&s);
    if (!cp) return std::nullopt;
    if (*cp == '"' || *cp == '\\') {
      out += '\\';
      out += static_cast<char>(*cp);
    } else if (*cp >= 0x20 && *cp < 0x7f) {
      out += static_cast<char>(*cp);
    } else {
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\U%08X", static_cast<unsigned>(*cp));
      out += buf;
    }
  }
  return out + "\"";
}

// The specs written back as policy YAML (block style, every string quoted); nullopt if a string
// cannot be written.
inline std::optional<std::string> Emit(const std::vector<PolicySpec>& specs) {
  std::string y = "policies:\n";
  bool ok = true;
  const auto q = [&](std::string_view s) {
    std::optional<std::string> r = Quote(s);
    ok &= r.has_value();
    return r.value_or("");
  };
  for (const PolicySpec& p : specs) {
    y += "  " + q(p.name) + ":\n    layers:\n";
    for (const LayerSpec& l : p.layers) {
      y += "      - name: " + q(l.name) + "\n";
      y += "        key: " + q(l.key_template) + "\n";
      y += "        capacity: " + l.params.capacity.ToString() + "\n";
      y += "        rate: " + l.params.rate.ToString() + "\n";
      y += std::string("        shadow: ") + (l.shadow ? "true" : "false") + "\n";
      y += "        max_buckets: " + std::to_string(l.max_buckets) + "\n";
      y += std::string("        on_limit: ") +
           (l.overflow == OverflowPolicy::kDeny ? "deny" : "fail_open") + "\n";
    }
    y += "    cost:\n";
    if (!p.cost.by.empty()) y += "      by: " + q(p.cost.by) + "\n";
    if (!p.cost.values.empty()) {
      y += "      values:\n";
      for (const auto& [k, v] : p.cost.values) y += "        " + q(k) + ": " + v.ToString() + "\n";
    }
    y += "      default: " + p.cost.default_cost.ToString() + "\n";
  }
  if (!ok) return std::nullopt;
  return y;
}

}  // namespace policy_yaml_internal

// Parses one fuzzer input (the whole input is the YAML text) and returns a description of the
// first violated invariant, or "" when all hold. Checked:
//   * the result is policies or InvalidArgument "fuzz.yaml:..." (never another code, which would
//     mean an unexpected exception was caught);
//   * parsed policies have unique names and pass ValidatePolicy;
//   * the lenient ParsePolicyDocument (validate = false) succeeds with the same specs whenever
//     the validating parse does; where it succeeds and the validating parse failed, the error of
//     its first policy that fails ValidatePolicy is the validating parse's error;
//   * the parsed specs, written back as YAML, parse to the same specs.
inline std::string CheckPolicyYaml(const uint8_t* data, size_t size) {
  using policy_yaml_internal::kSource;
  using policy_yaml_internal::SameSpecs;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<std::vector<PolicySpec>> specs = ParsePolicyYaml(text, kSource);
  if (!specs.ok()) {
    const std::string msg(specs.status().message());
    if (specs.status().code() != absl::StatusCode::kInvalidArgument) {
      return "error is not InvalidArgument: " + specs.status().ToString();
    }
    if (msg.rfind(std::string(kSource) + ":", 0) != 0)
      return "error does not name the file: " + msg;
  } else {
    std::set<std::string> names;
    for (const PolicySpec& p : *specs) {
      if (!names.insert(p.name).second) return "duplicate policy name " + p.name;
      if (absl::Status st = ValidatePolicy(p); !st.ok()) return "invalid policy: " + st.ToString();
    }
  }

  // (ParsePolicyYaml is the validating ParsePolicyDocument, so that one is not run again.)
  const absl::StatusOr<PolicyDocument> lenient = ParsePolicyDocument(text, kSource, false);
  if (specs.ok() && !lenient.ok()) return "lenient parse fails where the strict one succeeds";
  if (lenient.ok()) {
    std::vector<PolicySpec> lenient_specs;
    std::optional<absl::Status> first_invalid;
    for (const PolicyEntry& e : lenient->policies) {
      lenient_specs.push_back(e.spec);
      if (!e.validation.ok() && !first_invalid) first_invalid = e.validation;
    }
    if (specs.ok()) {
      if (first_invalid || !SameSpecs(lenient_specs, *specs)) return "lenient specs differ";
    } else if (!first_invalid || *first_invalid != specs.status()) {
      return "strict parse failed but not with the lenient parse's first validation error";
    }
  }
  if (!specs.ok()) return "";

  const std::optional<std::string> again = policy_yaml_internal::Emit(*specs);
  if (!again) return "";
  const absl::StatusOr<std::vector<PolicySpec>> back = ParsePolicyYaml(*again, kSource);
  if (!back.ok()) return "re-emitted policies do not parse: " + back.status().ToString();
  if (!SameSpecs(*back, *specs)) return "re-emitted policies parse to different specs";
  return "";
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_POLICY_YAML_CHECK_H_
