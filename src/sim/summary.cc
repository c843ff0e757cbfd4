// The text summary `tollgate simulate` prints.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tollgate/simulate.h"

namespace tollgate::sim {
namespace {

using json = nlohmann::json;

std::string Pct(double r) { return absl::StrFormat("%.2f%%", r * 100); }

std::string Count(uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string s;
  s.reserve(digits.size() + digits.size() / 3);
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return s;
}

std::string Num(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v)) && v < 1e15) {
    return Count(static_cast<uint64_t>(v));
  }
  return absl::StrFormat("%.2f", v);
}

}  // namespace

std::string FormatSummary(const json& r) {
  std::string out;
  try {
    absl::StrAppendFormat(&out, "scenario %s, policy '%s' (%s), seed %d\n",
                          r.at("scenario").get<std::string>(), r.at("policy").get<std::string>(),
                          r.at("policy_file").get<std::string>(), r.at("seed").get<uint64_t>());
    const std::string desc = r.at("description").get<std::string>();
    if (!desc.empty()) absl::StrAppend(&out, "  ", desc, desc.back() == '\n' ? "" : "\n");
    absl::StrAppendFormat(
        &out, "simulated %s s, %s users: %s decisions in %.2f s (%s decisions/s)\n",
        Num(r.at("duration_s").get<double>()), Count(r.at("users").get<uint64_t>()),
        Count(r.at("decisions").get<uint64_t>()), r.at("wall_seconds").get<double>(),
        Count(static_cast<uint64_t>(r.at("decisions_per_second").get<double>())));

    const json& l = r.at("legit");
    absl::StrAppendFormat(
        &out,
        "\nLegitimate users: %s requests, %s denied (false-deny rate %s), %s "
        "users affected\n",
        Count(l.at("sent").get<uint64_t>()), Count(l.at("denied").get<uint64_t>()),
        Pct(l.at("false_deny_rate").get<double>()), Count(l.at("users_affected").get<uint64_t>()));
    std::map<std::string, std::pair<uint64_t, uint64_t>> by_net;
    for (const json& c : l.at("by_type_network")) {
      auto& [s, d] = by_net[c.at("network").get<std::string>()];
      s += c.at("sent").get<uint64_t>();
      d += c.at("denied").get<uint64_t>();
    }
    if (!by_net.empty()) {
      absl::StrAppendFormat(&out, "  %-12s %-14s %12s %10s %9s\n", "network", "type", "sent",
                            "denied", "rate");
      for (const auto& [net, sd] : by_net) {
        for (const json& c : l.at("by_type_network")) {
          if (c.at("network").get<std::string>() != net) continue;
          absl::StrAppendFormat(
              &out, "  %-12s %-14s %12s %10s %9s\n", net, c.at("type").get<std::string>(),
              Count(c.at("sent").get<uint64_t>()), Count(c.at("denied").get<uint64_t>()),
              Pct(c.at("false_deny_rate").get<double>()));
        }
        absl::StrAppendFormat(&out, "  %-12s %-14s %12s %10s %9s\n", net, "(all)", Count(sd.first),
                              Count(sd.second),
                              Pct(sd.first ? static_cast<double>(sd.second) / sd.first : 0));
      }
    }

    const json& atk = r.at("attackers");
    if (!atk.empty()) {
      absl::StrAppend(&out, "\nAttackers:\n");
      absl::StrAppendFormat(&out, "  %-12s %-8s %10s %14s %12s %12s %8s %16s\n", "name", "kind",
                            "identities", "window (s)", "sent", "admitted", "share",
                            "throttled after");
      for (const json& a : atk) {
        const json& ttt = a.at("time_to_throttle_s");
        absl::StrAppendFormat(
            &out, "  %-12s %-8s %10s %14s %12s %12s %8s %16s\n", a.at("name").get<std::string>(),
            a.at("kind").get<std::string>(), Count(a.at("identities").get<uint64_t>()),
            absl::StrCat(Num(a.at("start_s").get<double>()), "-", Num(a.at("end_s").get<double>())),
            Count(a.at("sent").get<uint64_t>()), Count(a.at("admitted").get<uint64_t>()),
            Pct(a.at("admitted_share").get<double>()),
            ttt.is_null() ? std::string("never") : absl::StrFormat("%.3f s", ttt.get<double>()));
      }
    }

    const json& agg = r.at("aggregate");
    absl::StrAppendFormat(&out, "\nAggregate admitted load (cost/s): peak %s at %s s",
                          Num(agg.at("peak").get<double>()),
                          Num(agg.at("peak_at_s").get<double>()));
    if (agg.at("capacity").is_null()) {
      absl::StrAppend(&out,
                      "; backend capacity unknown (set backend_capacity or "
                      "expect.backend_ops_per_sec)\n");
    } else {
      absl::StrAppendFormat(&out, "; backend capacity %s: %s s above capacity\n",
                            Num(agg.at("capacity").get<double>()),
                            Num(agg.at("seconds_above_capacity").get<double>()));
    }

    absl::StrAppend(&out, "\nLayers:\n");
    absl::StrAppendFormat(&out, "  %-14s %-8s %12s %12s %14s %11s\n", "layer", "mode", "allowed",
                          "denied", "shadow_denied", "deny share");
    for (const json& x : r.at("layers")) {
      absl::StrAppendFormat(
          &out, "  %-14s %-8s %12s %12s %14s %11s\n", x.at("layer").get<std::string>(),
          x.at("shadow").get<bool>() ? "shadow" : "enforced",
          Count(x.at("allowed").get<uint64_t>()), Count(x.at("denied").get<uint64_t>()),
          Count(x.at("shadow_denied").get<uint64_t>()), Pct(x.at("deny_share").get<double>()));
    }
    for (const json& s : r.at("shadow")) {
      absl::StrAppendFormat(&out, "Shadow layer '%s' would deny %s requests (%s of all)\n",
                            s.at("layer").get<std::string>(),
                            Count(s.at("would_deny").get<uint64_t>()),
                            Pct(s.at("would_deny_rate").get<double>()));
    }
  } catch (const std::exception& e) {
    absl::StrAppend(&out, "\n(summary incomplete: ", e.what(), ")\n");
  }
  return out;
}

}  // namespace tollgate::sim
