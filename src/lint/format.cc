// Output of `tollgate policy check`: text for people, JSON for CI pipelines, and the command.
#include <exception>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "nlohmann/json.hpp"
#include "tollgate/policy_check.h"

namespace tollgate {
namespace {

std::string Location(const std::string& source, const SourcePos& p) {
  if (p.line <= 0) return source;
  return absl::StrCat(source, ":", p.line, ":", p.column);
}

std::string Subject(const Finding& f) {
  if (f.policy.empty()) return "";
  return f.layer.empty() ? absl::StrCat("policy '", f.policy, "'")
                         : absl::StrCat("policy '", f.policy, "' layer '", f.layer, "'");
}

nlohmann::json FindingJson(const Finding& f) {
  nlohmann::json numbers = nlohmann::json::object();
  for (const auto& [k, v] : f.numbers) numbers[k] = v;
  return {{"severity", SeverityName(f.severity)},
          {"rule", f.rule},
          {"policy", f.policy},
          {"layer", f.layer},
          {"line", f.pos.line},
          {"column", f.pos.column},
          {"message", f.message},
          {"numbers", numbers},
          {"fix", f.fix}};
}

std::string JsonText(const nlohmann::json& j) {
  // Replace invalid UTF-8 (a file name, a field from a broken file) rather than throw.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

std::string FormatCheckText(const CheckReport& r) {
  std::string out;
  for (const Finding& f : r.findings) {
    absl::StrAppend(&out, Location(r.source, f.pos), ": ", SeverityName(f.severity), ": [", f.rule,
                    "] ", Subject(f), ": ", f.message, "\n");
    if (!f.numbers.empty()) {
      out += "    numbers:";
      for (const auto& [k, v] : f.numbers) absl::StrAppend(&out, " ", k, "=", v);
      out += "\n";
    }
    if (!f.fix.empty()) absl::StrAppend(&out, "    fix: ", f.fix, "\n");
  }
  const size_t e = r.errors(), w = r.warnings();
  absl::StrAppend(&out, r.source, ": ", r.policies, r.policies == 1 ? " policy, " : " policies, ",
                  e, e == 1 ? " error, " : " errors, ", w, w == 1 ? " warning" : " warnings",
                  e + w == 0 ? " (clean)" : "", "\n");
  return out;
}

std::string FormatCheckJson(const CheckReport& r) {
  nlohmann::json findings = nlohmann::json::array();
  for (const Finding& f : r.findings) findings.push_back(FindingJson(f));
  nlohmann::json j = {{"file", r.source},           {"policies", r.policies},
                      {"errors", r.errors()},       {"warnings", r.warnings()},
                      {"exit_code", r.exit_code()}, {"findings", findings}};
  return JsonText(j);
}

int RunPolicyCheck(const std::string& path, CheckFormat format, const CheckOptions& options,
                   std::ostream& out, std::ostream& err) {
  try {
    if (absl::Status st = ValidateCheckOptions(options); !st.ok()) {
      err << "error: " << SV(st.message()) << "\n";
      return 2;
    }
    absl::StatusOr<PolicyDocument> doc = LoadPolicyDocument(path, /*validate=*/false);
    if (!doc.ok()) {
      // Unreadable or malformed: nothing to lint. Reported as one error finding.
      if (format == CheckFormat::kJson) {
        Finding f;
        f.severity = Severity::kError;
        f.rule = "unreadable";
        f.message = std::string(SV(doc.status().message()));
        CheckReport r;
        r.source = path;
        r.findings.push_back(std::move(f));
        out << FormatCheckJson(r);
      } else {
        err << "error: " << SV(doc.status().message()) << "\n";
      }
      return 2;
    }
    const CheckReport report = CheckPolicies(*doc, options);
    out << (format == CheckFormat::kJson ? FormatCheckJson(report) : FormatCheckText(report));
    return report.exit_code();
  } catch (const std::exception& e) {
    err << "error: " << path << ": " << e.what() << "\n";
    return 2;
  }
}

}  // namespace tollgate
