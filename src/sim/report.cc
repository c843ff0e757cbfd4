#include "sim/report.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "charts/svg.h"

namespace tollgate::sim {
namespace {

using charts::Axes;
using charts::C;
using charts::Compact;
using charts::Count;
using charts::Esc;
using charts::Fmt;
using charts::kTop;
using charts::LegendItem;
using charts::NiceAxis;
using charts::NotesBox;
using charts::NumberList;
using charts::Pct;
using charts::Plot;
using charts::Secs;
using charts::Section;
using charts::Span;
using charts::SvgOpen;
using charts::Title;
using charts::Trim;
using charts::Unavailable;
using nlohmann::json;

// Series longer than this are reduced before they are drawn (the plot is ~1000 px wide).
constexpr size_t kMaxPlotPoints = 1200;

// ---------------------------------------------------------------------------------------------
// Text and numbers (formatting and the SVG pieces are the chart module's, src/charts/svg.h)

// "4g" -> "4G" (cellular generations read better upper-case); other names unchanged.
std::string NetworkLabel(const std::string& n) {
  if (n.size() == 2 && n[0] >= '2' && n[0] <= '6' && (n[1] == 'g' || n[1] == 'G')) {
    return std::string(1, n[0]) + "G";
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Validated access to the result

enum class Need {
  kRequired,  // a missing field or null is reported
  kNullable,  // null is a value (nullopt, not reported); a missing field is reported
  kOptional,  // missing or null is fine; a wrong type is still reported
};

std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string TypeWithArticle(const json& j) {
  std::string t = j.type_name();
  bool vowel = !t.empty() && std::string_view("aeiou").find(t[0]) != std::string_view::npos;
  return t == "null" ? "null" : (vowel ? "an " : "a ") + t;
}

class Reader {
 public:
  size_t mark() const { return notes_.size(); }
  const std::vector<std::string>& notes() const { return notes_; }
  std::vector<std::string> NotesSince(size_t mark) const {
    return {notes_.begin() + static_cast<std::ptrdiff_t>(std::min(mark, notes_.size())),
            notes_.end()};
  }

  void Note(std::string text) {
    if (seen_.insert(text).second) notes_.push_back(std::move(text));
  }
  void Missing(const std::string& path) { Note("missing field " + path); }
  void Invalid(const std::string& path, std::string_view expected, const json& got) {
    Note("invalid field " + path + ": expected " + std::string(expected) + ", got " +
         TypeWithArticle(got));
  }

  // The value of obj[key], or nullptr when absent (reported unless optional). A null value is
  // returned as is.
  const json* Field(const json& obj, const std::string& path, std::string_view key, Need need) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    if (it == obj.end()) {
      if (need != Need::kOptional) Missing(Join(path, key));
      return nullptr;
    }
    return &*it;
  }

  std::optional<double> Number(const json& obj, const std::string& path, std::string_view key,
                               Need need = Need::kRequired) {
    const json* v = Field(obj, path, key, need);
    if (v == nullptr) return std::nullopt;
    return AsNumber(*v, Join(path, key), need);
  }

  std::optional<double> AsNumber(const json& v, const std::string& path,
                                 Need need = Need::kRequired) {
    if (v.is_null()) {
      if (need == Need::kRequired) Missing(path + " (null)");
      return std::nullopt;
    }
    if (!v.is_number()) {
      Invalid(path, "a number", v);
      return std::nullopt;
    }
    double d = v.get<double>();
    if (!std::isfinite(d)) {
      Note("invalid field " + path + ": not a finite number");
      return std::nullopt;
    }
    return d;
  }

  std::optional<std::string> String(const json& obj, const std::string& path, std::string_view key,
                                    Need need = Need::kRequired) {
    const json* v = Field(obj, path, key, need);
    if (v == nullptr) return std::nullopt;
    if (v->is_null()) {
      if (need == Need::kRequired) Missing(Join(path, key) + " (null)");
      return std::nullopt;
    }
    if (!v->is_string()) {
      Invalid(Join(path, key), "a string", *v);
      return std::nullopt;
    }
    return v->get_ref<const std::string&>();
  }

  // obj[key] if it is an array (or object when `object`), else nullptr (reported as needed).
  const json* Container(const json& obj, const std::string& path, std::string_view key, bool object,
                        Need need = Need::kRequired) {
    const json* v = Field(obj, path, key, need);
    if (v == nullptr) return nullptr;
    if (v->is_null() && need != Need::kRequired) return nullptr;
    if (object ? !v->is_object() : !v->is_array()) {
      Invalid(Join(path, key), object ? "an object" : "an array", *v);
      return nullptr;
    }
    return v;
  }
  const json* Array(const json& obj, const std::string& path, std::string_view key,
                    Need need = Need::kRequired) {
    return Container(obj, path, key, false, need);
  }
  const json* Object(const json& obj, const std::string& path, std::string_view key,
                     Need need = Need::kRequired) {
    return Container(obj, path, key, true, need);
  }

 private:
  std::vector<std::string> notes_;
  std::set<std::string> seen_;
};

// ---------------------------------------------------------------------------------------------
// Header and verdicts

struct Verdict {
  enum Kind { kPass, kFail, kInfo } kind;
  std::string text;
};

struct NetworkTotals {
  std::string network;
  double sent = 0, denied = 0;
};

// (type, network, rate, sent, denied) rows of legit.by_type_network that passed validation.
struct DenyRow {
  std::string type, network;
  double rate = 0;
  std::optional<double> sent, denied;
};

std::vector<DenyRow> ReadDenyRows(const json& root, Reader& r) {
  std::vector<DenyRow> rows;
  const json* legit = r.Object(root, "", "legit");
  if (legit == nullptr) return rows;
  const json* arr = r.Array(*legit, "legit", "by_type_network");
  if (arr == nullptr) return rows;
  for (size_t i = 0; i < arr->size(); ++i) {
    const json& row = (*arr)[i];
    std::string path = Index("legit.by_type_network", i);
    if (!row.is_object()) {
      r.Invalid(path, "an object", row);
      continue;
    }
    auto type = r.String(row, path, "type");
    auto network = r.String(row, path, "network");
    auto sent = r.Number(row, path, "sent");
    auto denied = r.Number(row, path, "denied");
    auto rate = r.Number(row, path, "false_deny_rate");
    if (!rate && sent && denied) rate = *sent > 0 ? *denied / *sent : 0;
    if (!type || !network || !rate) continue;
    rows.push_back({*type, *network, std::clamp(*rate, 0.0, 1.0), sent, denied});
  }
  return rows;
}

std::vector<Verdict> Verdicts(const json& root, const std::vector<DenyRow>& rows) {
  std::vector<Verdict> out;
  // False denies per network, weighted by requests sent.
  std::vector<NetworkTotals> nets;
  for (const auto& row : rows) {
    if (!row.sent || !row.denied) continue;
    auto it = std::find_if(nets.begin(), nets.end(),
                           [&](const NetworkTotals& n) { return n.network == row.network; });
    if (it == nets.end()) it = nets.insert(nets.end(), NetworkTotals{row.network});
    it->sent += *row.sent;
    it->denied += *row.denied;
  }
  std::string limit = Pct(kReportFalseDenyLimit);
  for (const auto& n : nets) {
    if (n.sent <= 0) continue;
    double rate = n.denied / n.sent;
    bool bad = rate > kReportFalseDenyLimit;
    out.push_back({bad ? Verdict::kFail : Verdict::kPass,
                   NetworkLabel(n.network) + " false denies " + Pct(rate) + " (" +
                       (bad ? "> " : "\xe2\x89\xa4 ") + limit + ")"});
  }
  if (nets.empty() && root.contains("legit") && root["legit"].is_object()) {
    Reader quiet;  // already reported where the legit section is rendered
    if (auto rate = quiet.Number(root["legit"], "legit", "false_deny_rate")) {
      bool bad = *rate > kReportFalseDenyLimit;
      out.push_back(
          {bad ? Verdict::kFail : Verdict::kPass,
           "false denies " + Pct(*rate) + " (" + (bad ? "> " : "\xe2\x89\xa4 ") + limit + ")"});
    }
  }
  // Load against capacity.
  Reader quiet;
  std::optional<double> cap;
  const json* agg = root.is_object() ? quiet.Object(root, "", "aggregate") : nullptr;
  if (agg != nullptr) cap = quiet.Number(*agg, "aggregate", "capacity", Need::kNullable);
  if (!cap && root.is_object()) cap = quiet.Number(root, "", "backend_capacity", Need::kNullable);
  std::optional<double> peak, above;
  if (agg != nullptr) {
    peak = quiet.Number(*agg, "aggregate", "peak");
    above = quiet.Number(*agg, "aggregate", "seconds_above_capacity");
  }
  if (!cap) {
    out.push_back({Verdict::kInfo, "backend capacity unknown: overload not judged"});
  } else if (peak && *cap > 0) {
    bool bad = (above && *above > 0) || *peak > *cap;
    std::string share = Pct(*peak / *cap);
    if (bad) {
      out.push_back({Verdict::kFail, "backend over capacity" +
                                         (above ? " for " + Secs(*above) : std::string()) +
                                         " (peak " + share + " of " + Count(*cap) + " cost/s)"});
    } else {
      out.push_back({Verdict::kPass, "admitted load within capacity (peak " + share + " of " +
                                         Count(*cap) + " cost/s)"});
    }
  }
  // Attackers.
  if (const json* atk = root.is_object() ? quiet.Array(root, "", "attackers") : nullptr) {
    for (size_t i = 0; i < atk->size(); ++i) {
      const json& a = (*atk)[i];
      if (!a.is_object()) continue;
      std::string path = Index("attackers", i);
      auto name = quiet.String(a, path, "name");
      auto ttt = quiet.Number(a, path, "time_to_throttle_s", Need::kNullable);
      auto admitted = quiet.Number(a, path, "admitted");
      auto share = quiet.Number(a, path, "admitted_share");
      std::string who = "attacker " + name.value_or("#" + std::to_string(i + 1));
      std::string adm = share ? ", " + Pct(*share) + " of its requests admitted" : "";
      if (ttt) {
        out.push_back({Verdict::kPass, who + " throttled after " + Secs(*ttt) + adm});
      } else if (admitted && *admitted > 0) {
        out.push_back({Verdict::kFail, who + " never throttled" + adm});
      } else if (admitted) {
        out.push_back({Verdict::kPass, who + " admitted nothing"});
      }
    }
  }
  return out;
}

std::string Header(const json& root, const std::vector<DenyRow>& rows, Reader& r) {
  auto scenario = r.String(root, "", "scenario");
  auto description = r.String(root, "", "description", Need::kOptional);
  auto policy = r.String(root, "", "policy");
  auto policy_file = r.String(root, "", "policy_file", Need::kOptional);
  auto seed = r.Number(root, "", "seed");
  auto duration = r.Number(root, "", "duration_s");
  auto users = r.Number(root, "", "users");
  auto decisions = r.Number(root, "", "decisions");
  auto wall = r.Number(root, "", "wall_seconds", Need::kOptional);
  auto dps = r.Number(root, "", "decisions_per_second", Need::kOptional);

  std::string s = "<header class=\"top\"><div class=\"brand\">tollgate simulate</div>";
  s += "<h1 id=\"scenario\">" + Esc(scenario.value_or("(unnamed scenario)")) + "</h1>";
  if (description && !description->empty()) {
    s += "<p class=\"desc\">" + Esc(*description) + "</p>";
  }
  auto item = [](std::string_view k, const std::string& v) {
    return "<div><dt>" + std::string(k) + "</dt><dd>" + v + "</dd></div>";
  };
  s += "<dl class=\"meta\">";
  std::string pol = policy ? "<code>" + Esc(*policy) + "</code>" : "n/a";
  if (policy_file) pol += " <span class=\"dim\">in " + Esc(*policy_file) + "</span>";
  s += item("policy", pol);
  s += item("seed", seed ? Esc(Count(*seed)) : "n/a");
  s += item("duration", duration ? Esc(Span(*duration)) : "n/a");
  s += item("users", users ? Esc(Count(*users)) : "n/a");
  s += item("decisions", decisions ? Esc(Count(*decisions)) : "n/a");
  if (dps || wall) {
    std::string speed = dps ? Esc(Compact(*dps)) + "/s" : "";
    if (wall)
      speed += (speed.empty() ? "" : " <span class=\"dim\">in ") + Esc(Secs(*wall)) +
               (dps ? "</span>" : "");
    s += item("simulated at", speed);
  }
  s += "</dl>";

  auto verdicts = Verdicts(root, rows);
  if (!verdicts.empty()) {
    s += "<ul class=\"verdicts\" id=\"verdicts\">";
    for (const auto& v : verdicts) {
      const char* cls = v.kind == Verdict::kFail   ? "fail"
                        : v.kind == Verdict::kPass ? "pass"
                                                   : "info";
      const char* mark = v.kind == Verdict::kFail   ? "\xe2\x9c\x98"   // heavy ballot x
                         : v.kind == Verdict::kPass ? "\xe2\x9c\x94"   // heavy check
                                                    : "\xe2\x80\xa2";  // bullet
      s += std::string("<li class=\"") + cls + "\"><b>" + mark + "</b> " + Esc(v.text) + "</li>";
    }
    s += "</ul>";
  }
  return s + "</header>";
}

// Headline numbers under the header.
std::string Tiles(const json& root) {
  Reader quiet;  // fields used here are reported by the sections that own them
  std::string s = "<div class=\"tiles\">";
  auto tile = [](std::string_view label, const std::string& value, const std::string& sub,
                 std::string_view cls = "") {
    return "<div class=\"tile " + std::string(cls) + "\"><div class=\"label\">" +
           std::string(label) + "</div><div class=\"value\">" + value +
           "</div><div class=\"sub\">" + sub + "</div></div>";
  };
  if (const json* legit = quiet.Object(root, "", "legit")) {
    auto sent = quiet.Number(*legit, "legit", "sent");
    auto denied = quiet.Number(*legit, "legit", "denied");
    auto rate = quiet.Number(*legit, "legit", "false_deny_rate");
    auto affected = quiet.Number(*legit, "legit", "users_affected");
    auto users = quiet.Number(root, "", "users");
    if (rate) {
      s += tile("legit false-deny rate", Esc(Pct(*rate)),
                (denied ? Esc(Count(*denied)) : "?") + " of " + (sent ? Esc(Count(*sent)) : "?") +
                    " requests",
                *rate > kReportFalseDenyLimit ? "bad" : "good");
    }
    if (affected) {
      std::string sub = users && *users > 0 ? Esc(Pct(*affected / *users)) + " of users" : "";
      s += tile("users with a false deny", Esc(Count(*affected)), sub);
    }
  }
  if (const json* agg = quiet.Object(root, "", "aggregate")) {
    auto peak = quiet.Number(*agg, "aggregate", "peak");
    auto cap = quiet.Number(*agg, "aggregate", "capacity", Need::kNullable);
    if (!cap) cap = quiet.Number(root, "", "backend_capacity", Need::kNullable);
    auto above = quiet.Number(*agg, "aggregate", "seconds_above_capacity");
    if (peak) {
      std::string sub =
          cap && *cap > 0 ? Esc(Pct(*peak / *cap)) + " of capacity" : "capacity unknown";
      s += tile("peak admitted load", Esc(Compact(*peak)) + "<small>/s</small>", sub,
                cap && *peak > *cap ? "bad" : "");
    }
    if (above && cap) {
      s += tile("time above capacity", Esc(Secs(*above)), "admitted load > backend capacity",
                *above > 0 ? "bad" : "good");
    }
  }
  if (const json* atk = quiet.Array(root, "", "attackers")) {
    double sent = 0, admitted = 0;
    for (const auto& a : *atk) {
      sent += quiet.Number(a, "", "sent").value_or(0);
      admitted += quiet.Number(a, "", "admitted").value_or(0);
    }
    if (!atk->empty()) {
      s += tile("attack traffic admitted", Esc(sent > 0 ? Pct(admitted / sent) : "n/a"),
                Esc(Count(admitted)) + " of " + Esc(Count(sent)) + " requests, " +
                    std::to_string(atk->size()) + " attacker" + (atk->size() == 1 ? "" : "s"));
    }
  }
  return s + "</div>";
}

// ---------------------------------------------------------------------------------------------
// (a) Aggregate admitted load vs capacity

std::string AggregateChart(const json& root, Reader& r) {
  size_t mark = r.mark();
  const json* agg = r.Object(root, "", "aggregate");
  std::vector<double> series;
  std::optional<double> cap, peak, peak_at, above;
  double dt = 0;  // aggregate.step_s; 0 while missing or invalid
  if (agg != nullptr) {
    if (auto step = r.Number(*agg, "aggregate", "step_s")) {
      if (*step > 0) {
        dt = *step;
      } else {
        r.Note("invalid field aggregate.step_s: must be positive");
      }
    }
    cap = r.Number(*agg, "aggregate", "capacity", Need::kNullable);
    if (!cap && !agg->contains("capacity")) {
      cap = r.Number(root, "", "backend_capacity", Need::kNullable);
    }
    peak = r.Number(*agg, "aggregate", "peak", Need::kOptional);
    peak_at = r.Number(*agg, "aggregate", "peak_at_s", Need::kOptional);
    above = r.Number(*agg, "aggregate", "seconds_above_capacity", Need::kOptional);
    if (const json* arr = r.Array(*agg, "aggregate", "series")) {
      series.reserve(arr->size());
      for (size_t i = 0; i < arr->size(); ++i) {
        auto v = r.AsNumber((*arr)[i], Index("aggregate.series", i));
        if (!v) {
          series.clear();
          break;
        }
        series.push_back(*v);
      }
    }
  }
  std::string subtitle =
      "Admitted cost per second, all traffic (legitimate and attack), against what the backend "
      "sustains.";
  if (agg == nullptr || dt <= 0 || series.empty()) {
    auto notes = r.NotesSince(mark);
    if (notes.empty()) notes.push_back("aggregate.series is empty");
    return Section("aggregate", "Aggregate load vs backend capacity", subtitle,
                   Unavailable("chart-aggregate", notes));
  }
  const size_t n = series.size();
  // Peak: the simulator's, else computed.
  if (!peak || !peak_at) {
    size_t im =
        static_cast<size_t>(std::max_element(series.begin(), series.end()) - series.begin());
    peak = series[im];
    peak_at = static_cast<double>(im) * dt;
  }
  // Reduce to at most kMaxPlotPoints buckets (max of each: peaks stay visible).
  size_t k = (n + kMaxPlotPoints - 1) / kMaxPlotPoints;
  std::vector<double> ts, vs;
  for (size_t i = 0; i < n; i += k) {
    double m = series[i];
    for (size_t j = i; j < std::min(n, i + k); ++j) m = std::max(m, series[j]);
    ts.push_back(static_cast<double>(i) * dt);
    vs.push_back(m);
  }
  const double t_end = static_cast<double>(n) * dt;
  double ymax = std::max(*peak, *std::max_element(series.begin(), series.end()));
  if (cap) ymax = std::max(ymax, *cap);
  Plot p;
  p.xa = NiceAxis(0, t_end, 10);
  p.xa.hi = std::max(t_end, p.xa.lo + 1e-9);  // time axis ends where the run ends
  while (!p.xa.ticks.empty() && p.xa.ticks.back() > t_end + 1e-9) p.xa.ticks.pop_back();
  p.ya = NiceAxis(0, ymax * 1.08, 6);

  std::string attrs = " data-points=\"" + std::to_string(n) +
                      "\" data-hover=\"series\" data-x0=\"" + C(p.x0) + "\" data-x1=\"" + C(p.x1) +
                      "\" data-t0=\"" + C(p.xa.lo) + "\" data-t1=\"" + Trim(Fmt("%.4f", p.xa.hi)) +
                      "\" data-ts=\"" + NumberList(ts) + "\" data-vs=\"" + NumberList(vs) +
                      "\" data-unit=\"cost/s\" data-step=\"" + Trim(Fmt("%.4f", dt * k)) + "\"";
  if (cap) attrs += " data-capacity=\"" + Trim(Fmt("%.4f", *cap)) + "\"";
  std::string s = SvgOpen("chart-aggregate", "Admitted load per second vs backend capacity", attrs);

  // Shade runs of seconds above capacity (full height), merging runs closer than 1.5 px.
  size_t shaded = 0;
  if (cap) {
    s += "<g class=\"over\">";
    double px_per_s = (p.x1 - p.x0) / (p.xa.hi - p.xa.lo);
    size_t i = 0;
    while (i < n) {
      if (series[i] <= *cap) {
        ++i;
        continue;
      }
      size_t j = i;
      size_t count = 0;
      while (j < n) {
        if (series[j] > *cap) {
          ++count;
          ++j;
          continue;
        }
        size_t g = j;
        while (g < n && series[g] <= *cap) ++g;
        if (g < n && static_cast<double>(g - j) * dt * px_per_s < 1.5) {
          j = g;
          continue;
        }
        break;
      }
      double xa = p.X(static_cast<double>(i) * dt), xb = p.X(static_cast<double>(j) * dt);
      s += "<rect class=\"over-band\" x=\"" + C(xa) + "\" y=\"" + C(p.y0) + "\" width=\"" +
           C(std::max(1.0, xb - xa)) + "\" height=\"" + C(p.y1 - p.y0) + "\">" +
           Title(Count(static_cast<double>(count) * dt) +
                 " s above capacity from t = " + Secs(static_cast<double>(i) * dt)) +
           "</rect>";
      ++shaded;
      i = j;
    }
    s += "</g>";
  }
  s += Axes(
      p, [](double t) { return Count(t); }, [](double v) { return Compact(v); },
      "time since start (s)", "admitted cost / s");

  // Area and step line.
  std::string line = "M" + C(p.X(ts[0])) + "," + C(p.Y(vs[0]));
  for (size_t i = 0; i < ts.size(); ++i) {
    double xe = p.X(i + 1 < ts.size() ? ts[i + 1] : t_end);
    if (i > 0) line += "V" + C(p.Y(vs[i]));
    line += "H" + C(xe);
  }
  s += "<path class=\"area load\" d=\"" + line + "V" + C(p.Y(0)) + "H" + C(p.X(ts[0])) + "Z\"/>";
  s += "<path id=\"aggregate-series\" class=\"line load\" data-points=\"" + std::to_string(n) +
       "\" d=\"" + line + "\"/>";

  if (cap) {
    double y = p.Y(*cap);
    s += "<line id=\"capacity-line\" class=\"capacity\" x1=\"" + C(p.x0) + "\" x2=\"" + C(p.x1) +
         "\" y1=\"" + C(y) + "\" y2=\"" + C(y) + "\">" +
         Title("capacity " + Count(*cap) + " cost/s") + "</line>";
    s += "<text class=\"cap-label\" x=\"" + C(p.x1 - 4) + "\" y=\"" + C(y - 7) +
         "\" text-anchor=\"end\">capacity " + Esc(Compact(*cap)) + "/s</text>";
  }
  // Peak marker.
  {
    double px = p.X(std::clamp(*peak_at + dt / 2, 0.0, t_end)), py = p.Y(*peak);
    bool left = px > (p.x0 + p.x1) / 2;
    std::string label = "peak " + Compact(*peak) + "/s at " + Secs(*peak_at);
    s += "<g id=\"peak-marker\" class=\"peak\"><circle cx=\"" + C(px) + "\" cy=\"" + C(py) +
         "\" r=\"5.5\">" + Title("peak " + Count(*peak) + " cost/s at t = " + Secs(*peak_at)) +
         "</circle>";
    double ly = std::max(p.y0 + 12, py - 12);
    s += "<text x=\"" + C(px + (left ? -10 : 10)) + "\" y=\"" + C(ly) + "\" text-anchor=\"" +
         (left ? "end" : "start") + "\">" + Esc(label) + "</text></g>";
  }
  s += "<line class=\"xhair\" x1=\"0\" x2=\"0\" y1=\"" + C(p.y0) + "\" y2=\"" + C(p.y1) + "\"/>";
  s += "</svg>";

  std::string legend = "<div class=\"legend\">" + LegendItem("load", "admitted load (cost/s)");
  if (cap) {
    legend += LegendItem("capacity", "backend capacity " + Count(*cap) + " cost/s");
    if (shaded)
      legend += LegendItem("over",
                           "seconds above capacity" + (above ? " (" + Count(*above) + " s)" : ""));
  } else {
    legend +=
        "<span class=\"key warn\" id=\"capacity-unknown\">backend capacity unknown (null): "
        "no capacity line</span>";
  }
  legend += LegendItem("peak", "peak");
  if (k > 1) legend += "<span class=\"key dim\">max of each " + Esc(Secs(dt * k)) + " shown</span>";
  legend += "</div>";
  return Section("aggregate", "Aggregate load vs backend capacity", subtitle, s + legend);
}

// ---------------------------------------------------------------------------------------------
// (b) Sample user's tokens over time

std::string TokensChart(const json& root, Reader& r) {
  size_t mark = r.mark();
  const json* su = r.Object(root, "", "sample_user");
  std::string subtitle = "Tokens left after each request (least over the enforced layers).";
  struct Pt {
    double t, tokens;
    bool allowed;
  };
  std::vector<Pt> pts;
  std::optional<std::string> user, network, traffic;
  size_t bad = 0;
  if (su != nullptr) {
    user = r.String(*su, "sample_user", "user");
    network = r.String(*su, "sample_user", "network", Need::kOptional);
    traffic = r.String(*su, "sample_user", "traffic", Need::kOptional);
    if (const json* arr = r.Array(*su, "sample_user", "points")) {
      pts.reserve(arr->size());
      for (size_t i = 0; i < arr->size(); ++i) {
        const json& q = (*arr)[i];
        bool ok = q.is_array() && q.size() == 3 && q[0].is_number() && q[1].is_number() &&
                  (q[2].is_number() || q[2].is_boolean());
        double t = ok ? q[0].get<double>() : 0, tok = ok ? q[1].get<double>() : 0;
        if (ok && (!std::isfinite(t) || !std::isfinite(tok))) ok = false;
        if (!ok) {
          if (bad++ == 0) {
            r.Note("invalid field " + Index("sample_user.points", i) +
                   ": expected [t_s, tokens, allowed 1|0], got " + TypeWithArticle(q));
          }
          continue;
        }
        bool allowed = q[2].is_boolean() ? q[2].get<bool>() : q[2].get<double>() != 0;
        pts.push_back({t, tok, allowed});
      }
      if (bad > 1) {
        r.Note(std::to_string(bad) + " of " + std::to_string(arr->size()) +
               " points of sample_user.points are invalid and were skipped");
      }
    }
  }
  if (pts.empty()) {
    auto notes = r.NotesSince(mark);
    if (notes.empty()) notes.push_back("sample_user.points is empty");
    return Section("tokens", "A sample user's tokens over time", subtitle,
                   Unavailable("chart-tokens", notes));
  }
  std::stable_sort(pts.begin(), pts.end(), [](const Pt& a, const Pt& b) { return a.t < b.t; });
  size_t denied = 0;
  double tmax_tok = 0;
  for (const auto& q : pts) {
    denied += q.allowed ? 0 : 1;
    tmax_tok = std::max(tmax_tok, q.tokens);
  }
  double tmin_tok = std::min(0.0, std::min_element(pts.begin(), pts.end(), [](auto& a, auto& b) {
                                    return a.tokens < b.tokens;
                                  })->tokens);
  const double t0 = pts.front().t, t1 = pts.back().t;
  Plot p;
  // The time axis spans the run (as the load chart's does) when its duration is known.
  Reader quiet;  // duration_s is reported by the header
  double t_end = std::max(t1, t0 + 1e-3);
  std::string coverage;
  if (auto d = quiet.Number(root, "", "duration_s"); d && *d >= t_end) {
    if (t_end >= 0.8 * *d) {
      t_end = *d;
    } else {
      coverage = "; the sample covers t = " + Secs(t0) + " to " + Secs(t1) + " of " + Span(*d);
    }
  }
  p.xa = NiceAxis(std::min(0.0, t0), t_end, 10);
  if (t_end > t1 + 1e-9) {
    p.xa.hi = t_end;
    while (!p.xa.ticks.empty() && p.xa.ticks.back() > t_end + 1e-9) p.xa.ticks.pop_back();
  }
  p.ya = NiceAxis(tmin_tok, std::max(tmax_tok * 1.1, 1.0), 5);

  // Line: raw, or a min/max envelope per pixel-wide time bucket when there are too many points.
  std::vector<double> hts, hvs;  // for the hover script
  std::string line;
  bool reduced = pts.size() > 2 * kMaxPlotPoints;
  if (!reduced) {
    for (size_t i = 0; i < pts.size(); ++i) {
      line += (i ? "L" : "M") + C(p.X(pts[i].t)) + "," + C(p.Y(pts[i].tokens));
    }
    if (pts.size() <= kMaxPlotPoints) {
      for (const auto& q : pts) hts.push_back(q.t), hvs.push_back(q.tokens);
    }
  } else {
    const double span = std::max(t1 - p.xa.lo, 1e-9);
    size_t i = 0;
    bool first = true;
    while (i < pts.size()) {
      size_t b = static_cast<size_t>((pts[i].t - p.xa.lo) / span * kMaxPlotPoints);
      size_t j = i, imin = i, imax = i;
      while (j < pts.size() &&
             static_cast<size_t>((pts[j].t - p.xa.lo) / span * kMaxPlotPoints) == b) {
        if (pts[j].tokens < pts[imin].tokens) imin = j;
        if (pts[j].tokens > pts[imax].tokens) imax = j;
        ++j;
      }
      size_t a0 = std::min(imin, imax), a1 = std::max(imin, imax);
      for (size_t a : {a0, a1}) {
        line += (first ? "M" : "L") + C(p.X(pts[a].t)) + "," + C(p.Y(pts[a].tokens));
        first = false;
      }
      hts.push_back(pts[a0].t);
      hvs.push_back(pts[imin].tokens);
      i = j;
    }
  }
  std::string attrs = " data-points=\"" + std::to_string(pts.size()) + "\" data-denied=\"" +
                      std::to_string(denied) + "\"";
  if (!hts.empty()) {
    attrs += " data-hover=\"series\" data-x0=\"" + C(p.x0) + "\" data-x1=\"" + C(p.x1) +
             "\" data-t0=\"" + Trim(Fmt("%.4f", p.xa.lo)) + "\" data-t1=\"" +
             Trim(Fmt("%.4f", p.xa.hi)) + "\" data-ts=\"" + NumberList(hts) + "\" data-vs=\"" +
             NumberList(hvs) + "\" data-unit=\"tokens" + (reduced ? " (min)" : "") + "\"";
  }
  std::string s = SvgOpen("chart-tokens", "A sample user's tokens remaining over time", attrs);
  s += Axes(
      p, [](double t) { return Count(t); }, [](double v) { return Compact(v); },
      "time since start (s)", "tokens remaining");
  s += "<path id=\"tokens-series\" class=\"line tokens\" data-points=\"" +
       std::to_string(pts.size()) + "\" d=\"" + line + "\"/>";
  if (pts.size() <= 300) {
    s += "<g class=\"dots\">";
    for (const auto& q : pts) {
      if (!q.allowed) continue;
      s += "<circle cx=\"" + C(p.X(q.t)) + "\" cy=\"" + C(p.Y(q.tokens)) + "\" r=\"2.4\"/>";
    }
    s += "</g>";
  }
  // Denied requests: an x per group of denials less than 3 px apart.
  s += "<g id=\"denied-markers\" class=\"denied\">";
  size_t i = 0;
  while (i < pts.size()) {
    if (pts[i].allowed) {
      ++i;
      continue;
    }
    size_t j = i, cnt = 0;
    double ylow = pts[i].tokens;
    while (j < pts.size() && p.X(pts[j].t) - p.X(pts[i].t) < 3) {
      if (!pts[j].allowed) ++cnt, ylow = std::min(ylow, pts[j].tokens);
      ++j;
    }
    double x = p.X(pts[i].t), y = p.Y(ylow);
    std::string tip = cnt == 1 ? "denied at t = " + Secs(pts[i].t) + " (" + Count(ylow) + " tokens)"
                               : std::to_string(cnt) + " denied from t = " + Secs(pts[i].t);
    s += "<g class=\"x\" data-count=\"" + std::to_string(cnt) + "\">" + Title(tip) + "<path d=\"M" +
         C(x - 4.5) + "," + C(y - 4.5) + "l9,9m0,-9l-9,9\"/></g>";
    i = j;
  }
  s += "</g>";
  // A rug of denials along the time axis, so they are visible even when tokens sit at zero.
  if (denied > 0) {
    s += "<g class=\"rug\">";
    double last = -10;
    for (const auto& q : pts) {
      if (q.allowed) continue;
      double x = p.X(q.t);
      if (x - last < 1) continue;
      last = x;
      s += "<line x1=\"" + C(x) + "\" x2=\"" + C(x) + "\" y1=\"" + C(p.y1 - 7) + "\" y2=\"" +
           C(p.y1) + "\"/>";
    }
    s += "</g>";
  }
  s += "<line class=\"xhair\" x1=\"0\" x2=\"0\" y1=\"" + C(p.y0) + "\" y2=\"" + C(p.y1) + "\"/>";
  s += "</svg>";

  std::string who = "<code>" + Esc(user.value_or("?")) + "</code>";
  if (network) who += " on " + Esc(NetworkLabel(*network));
  if (traffic) who += ", " + Esc(*traffic) + " traffic";
  std::string legend =
      "<div class=\"legend\">" + LegendItem("tokens", "tokens remaining") +
      LegendItem("denied", "denied request (" + Count(static_cast<double>(denied)) + ")") +
      "<span class=\"key dim\">" + Count(static_cast<double>(pts.size())) + " requests, " +
      Pct(static_cast<double>(denied) / pts.size()) + " denied" +
      (reduced ? "; min/max envelope shown" : "") + Esc(coverage) + "</span></div>";
  return Section("tokens", "A sample user's tokens over time",
                 "User " + who + ". " + std::string(subtitle), s + legend);
}

// ---------------------------------------------------------------------------------------------
// (c) False-deny rate by message type x network

const char* const kPalette[] = {"#2563eb", "#f59e0b", "#10b981", "#8b5cf6",
                                "#ef4444", "#0ea5e9", "#ec4899", "#84cc16"};

std::string DenyChart(const std::vector<DenyRow>& rows, std::vector<std::string> notes) {
  std::string title = "False denies by message type and network";
  std::string subtitle =
      "Share of legitimate requests denied, per message type (groups) and network (bars).";
  if (rows.empty()) {
    if (notes.empty()) notes.push_back("legit.by_type_network is empty");
    return Section("deny", title, subtitle, Unavailable("chart-deny", notes));
  }
  std::vector<std::string> types, nets;
  for (const auto& row : rows) {
    if (std::find(types.begin(), types.end(), row.type) == types.end()) types.push_back(row.type);
    if (std::find(nets.begin(), nets.end(), row.network) == nets.end()) nets.push_back(row.network);
  }
  double maxrate = 0;
  for (const auto& row : rows) maxrate = std::max(maxrate, row.rate);
  Plot p;
  p.y0 = kTop + 8;
  p.ya = NiceAxis(0, std::max(maxrate * 1.18, 0.01), 5);
  p.xa = {0, static_cast<double>(types.size()), {}};
  const double gw = (p.x1 - p.x0) / types.size();
  const double bw = std::min(56.0, gw * 0.78 / nets.size());
  bool labels = types.size() * nets.size() <= 48;
  std::string s = SvgOpen("chart-deny", "False-deny rate by message type and network",
                          " data-points=\"" + std::to_string(rows.size()) + "\"");
  s += Axes(
      p, [](double) { return std::string(); }, [](double v) { return Pct(v); }, "",
      "false-deny rate", false);
  for (size_t g = 0; g < types.size(); ++g) {
    double cx = p.x0 + gw * (g + 0.5);
    double gx = cx - bw * nets.size() / 2;
    std::string label = types[g];
    size_t max_chars = static_cast<size_t>(std::max(4.0, gw / 7.5));
    if (label.size() > max_chars) {
      size_t cut = max_chars - 1;  // back up to a UTF-8 character boundary
      while (cut > 0 && (static_cast<unsigned char>(label[cut]) & 0xC0) == 0x80) --cut;
      label = label.substr(0, cut) + "\xe2\x80\xa6";
    }
    s += "<text class=\"group-label\" x=\"" + C(cx) + "\" y=\"" + C(p.y1 + 20) +
         "\" text-anchor=\"middle\">" + Esc(label) + "</text>";
    if (g > 0) {
      s += "<line class=\"sep\" x1=\"" + C(p.x0 + gw * g) + "\" x2=\"" + C(p.x0 + gw * g) +
           "\" y1=\"" + C(p.y1) + "\" y2=\"" + C(p.y1 + 8) + "\"/>";
    }
    for (size_t b = 0; b < nets.size(); ++b) {
      auto it = std::find_if(rows.begin(), rows.end(), [&](const DenyRow& row) {
        return row.type == types[g] && row.network == nets[b];
      });
      if (it == rows.end()) continue;
      double x = gx + bw * b + 1, y = p.Y(it->rate);
      double h = std::max(p.y1 - y, it->rate > 0 ? 1.5 : 0.0);
      std::string tip = types[g] + " on " + NetworkLabel(nets[b]) + ": " + Pct(it->rate);
      if (it->sent && it->denied) {
        tip += " (" + Count(*it->denied) + " of " + Count(*it->sent) + " denied)";
      }
      s += "<rect class=\"bar\" data-type=\"" + Esc(types[g]) + "\" data-network=\"" +
           Esc(nets[b]) + "\" data-rate=\"" + Trim(Fmt("%.6f", it->rate)) + "\" x=\"" + C(x) +
           "\" y=\"" + C(p.y1 - h) + "\" width=\"" + C(std::max(1.0, bw - 2)) + "\" height=\"" +
           C(h) + "\" rx=\"2\" fill=\"" + kPalette[b % std::size(kPalette)] + "\"" +
           (it->rate > kReportFalseDenyLimit ? " stroke=\"#991b1b\" stroke-width=\"1.5\"" : "") +
           ">" + Title(tip) + "</rect>";
      if (labels) {
        s += "<text class=\"bar-label" +
             std::string(it->rate > kReportFalseDenyLimit ? " over-limit" : "") + "\" x=\"" +
             C(x + (bw - 2) / 2) + "\" y=\"" + C(p.y1 - h - 5) + "\" text-anchor=\"middle\">" +
             Esc(Pct(it->rate)) + "</text>";
      }
    }
  }
  if (kReportFalseDenyLimit <= p.ya.hi) {
    double y = p.Y(kReportFalseDenyLimit);
    s += "<line id=\"deny-limit\" class=\"limit\" x1=\"" + C(p.x0) + "\" x2=\"" + C(p.x1) +
         "\" y1=\"" + C(y) + "\" y2=\"" + C(y) + "\"/><text class=\"limit-label\" x=\"" +
         C(p.x1 - 4) + "\" y=\"" + C(y - 6) + "\" text-anchor=\"end\">" +
         Esc(Pct(kReportFalseDenyLimit)) + " limit</text>";
  }
  s += "</svg>";
  std::string legend = "<div class=\"legend\">";
  for (size_t b = 0; b < nets.size(); ++b) {
    legend += LegendItem("", NetworkLabel(nets[b]),
                         std::string("background:") + kPalette[b % std::size(kPalette)]);
  }
  legend += LegendItem("limit", Pct(kReportFalseDenyLimit) + " verdict limit") + "</div>";
  return Section("deny", title, subtitle, s + legend);
}

// ---------------------------------------------------------------------------------------------
// (d) Attackers, layers, shadow layers

std::string ShareBar(double share, std::string_view cls) {
  double w = std::clamp(share, 0.0, 1.0) * 100;
  return "<span class=\"bar-cell\"><span class=\"hbar " + std::string(cls) +
         "\"><span style=\"width:" + Trim(Fmt("%.2f", w)) + "%\"></span></span>" + Esc(Pct(share)) +
         "</span>";
}

std::string AttackersTable(const json& root, Reader& r) {
  size_t mark = r.mark();
  const json* arr = r.Array(root, "", "attackers");
  std::string title = "Attackers";
  std::string sub = "What each attacker got through, and how long before it was first denied.";
  if (arr == nullptr)
    return Section("attackers", title, sub, Unavailable("attackers", r.NotesSince(mark)));
  if (arr->empty()) {
    return Section("attackers", title, sub,
                   "<p class=\"empty\">No attackers in this scenario.</p>");
  }
  std::string s =
      "<table class=\"data\" id=\"attackers-table\"><thead><tr><th>attacker</th><th>kind</th>"
      "<th class=\"num\">identities</th><th>active</th><th class=\"num\">sent</th>"
      "<th class=\"num\">admitted</th><th class=\"num\">admitted cost</th><th>admitted "
      "share</th><th class=\"num\">time to throttle</th></tr></thead><tbody>";
  for (size_t i = 0; i < arr->size(); ++i) {
    const json& a = (*arr)[i];
    std::string path = Index("attackers", i);
    if (!a.is_object()) {
      r.Invalid(path, "an object", a);
      continue;
    }
    auto name = r.String(a, path, "name");
    auto kind = r.String(a, path, "kind");
    auto ids = r.Number(a, path, "identities");
    auto start = r.Number(a, path, "start_s");
    auto end = r.Number(a, path, "end_s");
    auto sent = r.Number(a, path, "sent");
    auto admitted = r.Number(a, path, "admitted");
    auto cost = r.Number(a, path, "admitted_cost");
    auto share = r.Number(a, path, "admitted_share");
    auto ttt = r.Number(a, path, "time_to_throttle_s", Need::kNullable);
    bool has_ttt_field = a.contains("time_to_throttle_s");
    auto num = [](const std::optional<double>& v) { return v ? Esc(Count(*v)) : "&mdash;"; };
    s += "<tr><td><b>" + Esc(name.value_or("?")) + "</b></td><td><span class=\"pill\">" +
         Esc(kind.value_or("?")) + "</span></td><td class=\"num\">" + num(ids) + "</td><td>" +
         (start ? Esc(Secs(*start)) : "?") + " &ndash; " + (end ? Esc(Secs(*end)) : "?") +
         "</td><td class=\"num\">" + num(sent) + "</td><td class=\"num\">" + num(admitted) +
         "</td><td class=\"num\">" + num(cost) + "</td><td>" +
         (share ? ShareBar(*share, "atk") : "&mdash;") + "</td><td class=\"num\">";
    if (ttt) {
      s += Esc(Secs(*ttt));
    } else if (has_ttt_field && (a["time_to_throttle_s"].is_null())) {
      s += "<span class=\"never\">never</span>";
    } else {
      s += "&mdash;";
    }
    s += "</td></tr>";
  }
  s += "</tbody></table>";
  auto notes = r.NotesSince(mark);
  if (!notes.empty()) s += NotesBox(notes, "Some attacker fields are missing:");
  return Section("attackers", title, sub, s);
}

std::string LayersTable(const json& root, Reader& r) {
  size_t mark = r.mark();
  const json* arr = r.Array(root, "", "layers");
  std::string title = "Deny share by layer";
  std::string sub = "Which layer denied requests (share of all denied requests).";
  if (arr == nullptr)
    return Section("layers", title, sub, Unavailable("layers", r.NotesSince(mark)));
  if (arr->empty()) return Section("layers", title, sub, "<p class=\"empty\">No layers.</p>");
  std::string s =
      "<table class=\"data\" id=\"layers-table\"><thead><tr><th>layer</th><th>deny "
      "share</th><th class=\"num\">allowed</th><th class=\"num\">denied</th><th "
      "class=\"num\">shadow denied</th></tr></thead><tbody>";
  for (size_t i = 0; i < arr->size(); ++i) {
    const json& l = (*arr)[i];
    std::string path = Index("layers", i);
    if (!l.is_object()) {
      r.Invalid(path, "an object", l);
      continue;
    }
    auto name = r.String(l, path, "layer");
    const json* shadow_v = r.Field(l, path, "shadow", Need::kOptional);
    bool shadow = shadow_v != nullptr && shadow_v->is_boolean() && shadow_v->get<bool>();
    if (shadow_v != nullptr && !shadow_v->is_boolean() && !shadow_v->is_null()) {
      r.Invalid(Join(path, "shadow"), "a boolean", *shadow_v);
    }
    auto allowed = r.Number(l, path, "allowed");
    auto denied = r.Number(l, path, "denied");
    auto sdenied = r.Number(l, path, "shadow_denied", Need::kOptional);
    auto share = r.Number(l, path, "deny_share");
    auto num = [](const std::optional<double>& v) { return v ? Esc(Count(*v)) : "&mdash;"; };
    s += "<tr><td><code>" + Esc(name.value_or("?")) + "</code>" +
         (shadow ? " <span class=\"pill shadow\">shadow</span>" : "") + "</td><td>" +
         (share ? ShareBar(*share, shadow ? "shadow" : "layer") : "&mdash;") +
         "</td><td class=\"num\">" + num(allowed) + "</td><td class=\"num\">" + num(denied) +
         "</td><td class=\"num\">" + num(sdenied) + "</td></tr>";
  }
  s += "</tbody></table>";
  auto notes = r.NotesSince(mark);
  if (!notes.empty()) s += NotesBox(notes, "Some layer fields are missing:");
  return Section("layers", title, sub, s);
}

std::string ShadowTable(const json& root, Reader& r) {
  size_t mark = r.mark();
  const json* arr = r.Array(root, "", "shadow", Need::kOptional);
  std::string title = "Shadow layers";
  std::string sub =
      "Layers evaluated but not enforced: what they would have denied had they been enforced.";
  if (arr == nullptr) {
    auto notes = r.NotesSince(mark);
    if (!notes.empty()) return Section("shadow", title, sub, Unavailable("shadow", notes));
    return Section("shadow", title, sub, "<p class=\"empty\">No shadow layers.</p>");
  }
  if (arr->empty())
    return Section("shadow", title, sub, "<p class=\"empty\">No shadow layers.</p>");
  std::string s =
      "<table class=\"data\" id=\"shadow-table\"><thead><tr><th>layer</th><th "
      "class=\"num\">would deny</th><th>would-deny rate</th></tr></thead><tbody>";
  for (size_t i = 0; i < arr->size(); ++i) {
    const json& l = (*arr)[i];
    std::string path = Index("shadow", i);
    if (!l.is_object()) {
      r.Invalid(path, "an object", l);
      continue;
    }
    auto name = r.String(l, path, "layer");
    auto would = r.Number(l, path, "would_deny");
    auto rate = r.Number(l, path, "would_deny_rate");
    s += "<tr><td><code>" + Esc(name.value_or("?")) + "</code></td><td class=\"num\">" +
         (would ? Esc(Count(*would)) : "&mdash;") + "</td><td>" +
         (rate ? ShareBar(*rate, "shadow") : "&mdash;") + "</td></tr>";
  }
  s += "</tbody></table>";
  auto notes = r.NotesSince(mark);
  if (!notes.empty()) s += NotesBox(notes, "Some shadow-layer fields are missing:");
  return Section("shadow", title, sub, s);
}

// ---------------------------------------------------------------------------------------------
// Page (styles and scripts: the chart module's assets, src/charts/assets/)

std::string Page(const std::string& title, const std::string& body) {
  std::string s =
      "<!DOCTYPE html>\n<html lang=\"en\" data-script-errors=\"0\"><head><meta "
      "charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      "<meta name=\"generator\" content=\"tollgate simulate\"><title>" +
      Esc(title) + "</title><style>" + std::string(charts::ChartsCss()) + "</style><script>" +
      std::string(charts::ErrorHookJs()) + "</script></head>\n<body data-script-errors=\"0\"><main>\n";
  s += body;
  s += "\n<footer>Generated by <code>tollgate simulate --report</code>. Self-contained: no "
       "external resources; charts are inline SVG.</footer></main><div id=\"tip\"></div><script>";
  s += charts::HoverJs();
  s += "tollgateHover(document);document.body.setAttribute('data-scripts-ran','1');";
  s += "</script></body></html>\n";
  return s;
}

std::string Render(const json& result) {
  if (!result.is_object()) {
    std::vector<std::string> notes = {"the simulation result is not a JSON object (got " +
                                      TypeWithArticle(result) + ")"};
    return Page("tollgate simulation report",
                "<header class=\"top\"><div class=\"brand\">tollgate simulate</div><h1>Simulation "
                "report</h1></header>" +
                    NotesBox(notes, "Nothing to show:"));
  }
  Reader r;
  if (const json* v = r.Field(result, "", "schema", Need::kRequired)) {
    if (!v->is_number_integer() && !v->is_number_unsigned()) {
      r.Invalid("schema", "an integer", *v);
    } else if (v->get<int64_t>() != 1) {
      r.Note("unknown schema version " + std::to_string(v->get<int64_t>()) +
             " (this report reads version 1); showing what matches version 1");
    }
  }
  // Deny rows first: the header's per-network verdicts need them.
  size_t deny_mark = r.mark();
  std::vector<DenyRow> rows = ReadDenyRows(result, r);
  std::vector<std::string> deny_notes = r.NotesSince(deny_mark);
  std::string header = Header(result, rows, r);
  if (const json* legit = r.Object(result, "", "legit")) {
    for (const char* key : {"sent", "allowed", "denied", "false_deny_rate", "users_affected"}) {
      r.Number(*legit, "legit", key);
    }
  }
  std::string deny = DenyChart(rows, deny_notes);
  std::string agg = AggregateChart(result, r);
  std::string tokens = TokensChart(result, r);
  std::string attackers = AttackersTable(result, r);
  std::string layers = LayersTable(result, r);
  std::string shadow = ShadowTable(result, r);

  std::string body = header;
  if (!r.notes().empty()) {
    body += "<div id=\"report-notes\">" +
            NotesBox(r.notes(),
                     "This result is incomplete; the parts that need these fields are "
                     "left out:") +
            "</div>";
  }
  body += Tiles(result) + agg + tokens + deny + attackers + "<div class=\"grid2\">" + layers +
          shadow + "</div>";
  Reader quiet;
  auto scenario = quiet.String(result, "", "scenario");
  return Page("tollgate simulation: " + scenario.value_or("report"), body);
}

}  // namespace

std::string RenderSimulationReport(const nlohmann::json& result) {
  try {
    return Render(result);
  } catch (const std::exception& e) {
    try {
      return "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>tollgate simulation "
             "report</title></head><body><p>The report could not be rendered: " +
             Esc(e.what()) + "</p></body></html>\n";
    } catch (...) {
      return {};
    }
  } catch (...) {
    return {};
  }
}

}  // namespace tollgate::sim
