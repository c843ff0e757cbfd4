// The arithmetic behind `tollgate policy check`: how many buckets a layer has for the expected
// deployment, what traffic reaches one bucket, and number formatting for findings. Doubles are
// fine here: these numbers size a policy and are printed, never used to admit a request.
#ifndef TOLLGATE_LINT_SIZING_H_
#define TOLLGATE_LINT_SIZING_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tollgate/decimal.h"
#include "tollgate/limiter.h"
#include "tollgate/policy_config.h"

namespace tollgate::lint {

double ToDouble(Decimal d);

// "20", "0.25", "1.5e+06" is never produced: plain digits with at most 3 decimals (trailing
// zeros dropped); values below 0.001 print with up to 9 decimals.
std::string Num(double v);
// Seconds with a unit: "10 s", "0.25 s", "2 h" for >= 2 hours, "3 min" for >= 3 minutes.
std::string Secs(double seconds);

// The {field} names of a key template, in order, without duplicates. REQUIRES: a valid template.
std::vector<std::string> TemplateFields(std::string_view key_template);

// What a policy's expectations say about its request fields.
class Deployment {
 public:
  Deployment(const PolicySpec& spec, const PolicyExpectations* expect);

  // The field carrying the message type: expect.type_field, else cost.by, else "type".
  const std::string& type_field() const { return type_field_; }
  // Distinct values of `field` expected at once, if known: expect.fields, then users for
  // "user", ips for "ip", the number of declared message types (else cost-table entries) for
  // the type field.
  std::optional<double> Cardinality(std::string_view field) const;
  // Buckets of a layer with these template fields: the product of their cardinalities (1 with
  // no fields); nullopt if any is unknown.
  std::optional<double> Buckets(const std::vector<std::string>& fields) const;
  // The cost of a request whose type is `type` (cost table, else default).
  Decimal CostOf(std::string_view type) const;
  // Expected users (expect.users, else the cardinality of "user"), if known.
  std::optional<double> users() const;

 private:
  const PolicySpec& spec_;
  const PolicyExpectations* expect_;
  std::string type_field_;
};

}  // namespace tollgate::lint

#endif  // TOLLGATE_LINT_SIZING_H_
