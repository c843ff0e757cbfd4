// `tollgate policy check`: a linter that knows how rate-limit policies fail in production.
//
// It reads the same policy file the server uses, with each policy's optional `expect:` section
// (PolicyExpectations: expected users and IPs, the backend's sustainable load, message types and
// their tick rates), and reports, per policy and layer, with the numbers behind each finding and
// a concrete fix:
//   attack-window     capacity/rate (recovery time) above the limit (default 10 s): the burst an
//                     attacker gets before the limiter reacts, capacity + rate x T, for one
//                     identity and for N identities together;
//   aggregate-flood   no global layer, or what all expected users can push within their own
//                     limits (sustained and within one second) above the backend's capacity, with
//                     the global layer that would hold;
//   jitter-headroom   per-identity capacity below rate x the jitter window (default 1 s), or a
//                     refill rate below a declared tick rate (x cost) plus 20%;
//   impossible-cost   a cost above a layer's capacity: that request type can never pass;
//   shadow-only       every layer is shadow: the policy limits nothing;
//   missing-field     a key template (or cost.by) field the declared request fields never supply;
//   max-buckets       a layer tracks fewer buckets than the expected identities;
//   useless-shadow    a shadow layer that can never deny where its enforced twin allows;
//   invalid-policy    anything else the server would reject;
//   no-expectations   (note) no `expect:` section, so sizing checks are skipped.
// The full rule book, with the arithmetic, is docs/policy-check.md.
#ifndef TOLLGATE_POLICY_CHECK_H_
#define TOLLGATE_POLICY_CHECK_H_

#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "tollgate/clock.h"
#include "tollgate/policy_config.h"

namespace tollgate {

enum class Severity { kNote, kWarning, kError };
// "note", "warning", "error".
const char* SeverityName(Severity s);

struct Finding {
  Severity severity = Severity::kNote;
  std::string rule;    // e.g. "attack-window"
  std::string policy;  // empty for file-level findings
  std::string layer;   // empty for policy-level findings
  SourcePos pos;       // where in the file (the layer, cost section or policy)
  std::string message;
  // The numbers behind the finding, in order: name and printed value (with its unit).
  std::vector<std::pair<std::string, std::string>> numbers;
  std::string fix;  // a concrete change; empty for notes that need none
};

struct CheckOptions {
  // A layer whose capacity/rate exceeds this is an attack window. (0, 1 day].
  Duration max_recovery = std::chrono::seconds(10);
  // Overrides every policy's expect.jitter_window when set. (0, 10 min].
  std::optional<Duration> jitter_window;
};
// InvalidArgument naming the option and its accepted range.
[[nodiscard]] absl::Status ValidateCheckOptions(const CheckOptions& options);

struct CheckReport {
  std::string source;
  size_t policies = 0;
  std::vector<Finding> findings;  // file order: by policy, then layer
  size_t errors() const;
  size_t warnings() const;
  // 2 if any error, else 1 if any warning, else 0.
  int exit_code() const;
};

// Lints every policy of `doc` (parse it with validate = false so that invalid policies are
// reported too). REQUIRES: ValidateCheckOptions(options).ok().
CheckReport CheckPolicies(const PolicyDocument& doc, const CheckOptions& options = {});

// Human-readable: one "FILE:LINE:COL: severity: [rule] policy/layer: message" line per finding,
// then its numbers and fix, then a summary line.
std::string FormatCheckText(const CheckReport& report);
// A JSON document: {"file", "policies", "errors", "warnings", "exit_code", "findings":
// [{"severity", "rule", "policy", "layer", "line", "column", "message", "numbers": {name: value},
// "fix"}]}.
std::string FormatCheckJson(const CheckReport& report);

enum class CheckFormat { kText, kJson };

// The whole command: loads `path`, lints it, prints the report to `out` in `format`. A file that
// cannot be read or parsed is reported (to `out` as a finding in JSON, to `err` as text) with exit
// code 2. Returns the exit code. Never throws.
int RunPolicyCheck(const std::string& path, CheckFormat format, const CheckOptions& options,
                   std::ostream& out, std::ostream& err);

}  // namespace tollgate

#endif  // TOLLGATE_POLICY_CHECK_H_
