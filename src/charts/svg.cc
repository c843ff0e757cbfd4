#include "charts/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "charts/assets.h"

namespace tollgate::charts {

std::string Esc(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        // Control characters other than tab/newline are not allowed in HTML text.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string Fmt(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) return {};
  return std::string(buf, std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
}

// A coordinate in the SVG (one decimal is plenty at this size).
std::string C(double v) {
  if (!std::isfinite(v)) v = 0;
  std::string s = Fmt("%.1f", v);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  if (s == "-0") s = "0";
  return s;
}

// Drops trailing zeros of a fixed-point rendering ("1.50" -> "1.5", "2.00" -> "2").
std::string Trim(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

// Thousands separators on the integer part of a fixed rendering.
std::string Grouped(double v, int decimals) {
  if (!std::isfinite(v)) return "n/a";
  if (std::fabs(v) >= 1e18) return Fmt("%.3g", v);
  std::string s = Fmt("%.*f", decimals, v);
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.erase(0, 1);
  size_t dot = s.find('.');
  std::string ip = s.substr(0, dot);
  std::string frac = dot == std::string::npos ? "" : s.substr(dot);
  std::string g;
  for (size_t i = 0; i < ip.size(); ++i) {
    if (i > 0 && (ip.size() - i) % 3 == 0) g += ',';
    g += ip[i];
  }
  std::string out = (neg ? "-" : "") + g + frac;
  return out == "-0" ? "0" : out;
}

// Counts and cost amounts: integers grouped, fractions with up to two decimals.
std::string Count(double v) {
  if (!std::isfinite(v)) return "n/a";
  if (std::fabs(v - std::round(v)) < 1e-9) return Grouped(std::round(v), 0);
  return Trim(Grouped(v, std::fabs(v) < 100 ? 2 : 1));
}

// Axis labels: 1.5k, 150k, 2M.
std::string Compact(double v) {
  double a = std::fabs(v);
  if (a >= 1e9) return Trim(Fmt("%.2f", v / 1e9)) + "G";
  if (a >= 1e6) return Trim(Fmt("%.2f", v / 1e6)) + "M";
  if (a >= 1e4) return Trim(Fmt("%.1f", v / 1e3)) + "k";
  if (a >= 1000) return Trim(Fmt("%.2f", v / 1e3)) + "k";
  if (a >= 10 || a == 0) return Trim(Fmt("%.1f", v));
  return Trim(Fmt("%.3f", v));
}

std::string Pct(double rate) {
  if (!std::isfinite(rate)) return "n/a";
  double p = rate * 100;
  if (p == 0) return "0%";
  if (std::fabs(p) < 0.1) return Trim(Fmt("%.3f", p)) + "%";
  if (std::fabs(p) < 10) return Trim(Fmt("%.2f", p)) + "%";
  return Trim(Fmt("%.1f", p)) + "%";
}

// A short time: 310 ms, 4.2 s, 612 s.
std::string Secs(double s) {
  if (!std::isfinite(s)) return "n/a";
  if (s == 0) return "0 s";
  if (std::fabs(s) < 1) return Trim(Fmt("%.1f", s * 1000)) + " ms";
  if (std::fabs(s) < 100) return Trim(Fmt("%.2f", s)) + " s";
  return Grouped(std::round(s), 0) + " s";
}

// A duration: 90 s, 10 min, 1 h, 2 h 30 min.
std::string Span(double s) {
  if (!std::isfinite(s) || s < 0) return "n/a";
  if (s < 120) return Trim(Fmt("%.2f", s)) + " s";
  if (s < 7200) return Trim(Fmt("%.1f", s / 60)) + " min";
  double h = std::floor(s / 3600);
  double m = std::round((s - h * 3600) / 60);
  return Grouped(h, 0) + " h" + (m > 0 ? " " + Grouped(m, 0) + " min" : "");
}

// A comma-separated list of numbers for the hover script.
std::string NumberList(const std::vector<double>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += Trim(Fmt("%.4f", v[i]));
  }
  return s;
}

// Round tick steps (1, 2, 2.5, 5 x 10^k) covering [lo, hi] with about `target` intervals.
Axis NiceAxis(double lo, double hi, int target) {
  Axis a;
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (!(hi > lo)) hi = lo + (lo == 0 ? 1 : std::fabs(lo));
  double raw = (hi - lo) / target;
  double mag = std::pow(10, std::floor(std::log10(raw)));
  double norm = raw / mag;
  double step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  if (!std::isfinite(step) || step <= 0) {
    a.lo = lo, a.hi = hi, a.ticks = {lo, hi};
    return a;
  }
  a.lo = std::floor(lo / step + 1e-9) * step;
  a.hi = std::ceil(hi / step - 1e-9) * step;
  if (!(a.hi > a.lo)) a.hi = a.lo + step;
  for (int i = 0; i <= 60; ++i) {
    double t = a.lo + i * step;
    if (t > a.hi + step * 1e-6) break;
    a.ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  }
  return a;
}


std::string Axes(const Plot& p, const Labeler& xlabel, const Labeler& ylabel,
                 std::string_view xtitle, std::string_view ytitle, bool xticks) {
  std::string s = "<g class=\"axes\">";
  for (double t : p.ya.ticks) {
    double y = p.Y(t);
    s += "<line class=\"grid\" x1=\"" + C(p.x0) + "\" x2=\"" + C(p.x1) + "\" y1=\"" + C(y) +
         "\" y2=\"" + C(y) + "\"/>";
    s += "<text class=\"tick\" x=\"" + C(p.x0 - 8) + "\" y=\"" + C(y + 4) +
         "\" text-anchor=\"end\">" + Esc(ylabel(t)) + "</text>";
  }
  if (xticks) {
    for (double t : p.xa.ticks) {
      double x = p.X(t);
      s += "<line class=\"tickmark\" x1=\"" + C(x) + "\" x2=\"" + C(x) + "\" y1=\"" + C(p.y1) +
           "\" y2=\"" + C(p.y1 + 5) + "\"/>";
      s += "<text class=\"tick\" x=\"" + C(x) + "\" y=\"" + C(p.y1 + 19) +
           "\" text-anchor=\"middle\">" + Esc(xlabel(t)) + "</text>";
    }
  }
  s += "<line class=\"axis\" x1=\"" + C(p.x0) + "\" x2=\"" + C(p.x1) + "\" y1=\"" + C(p.y1) +
       "\" y2=\"" + C(p.y1) + "\"/>";
  s += "<line class=\"axis\" x1=\"" + C(p.x0) + "\" x2=\"" + C(p.x0) + "\" y1=\"" + C(p.y0) +
       "\" y2=\"" + C(p.y1) + "\"/>";
  if (!xtitle.empty()) {
    s += "<text class=\"axis-title\" x=\"" + C((p.x0 + p.x1) / 2) + "\" y=\"" + C(p.h - 10) +
         "\" text-anchor=\"middle\">" + Esc(xtitle) + "</text>";
  }
  s += "<text class=\"axis-title\" transform=\"translate(18," + C((p.y0 + p.y1) / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + Esc(ytitle) + "</text>";
  return s + "</g>";
}

std::string SvgOpen(std::string_view id, std::string_view label, std::string_view extra_attrs) {
  return "<svg id=\"" + std::string(id) + "\" class=\"chart\" viewBox=\"0 0 " + C(kW) + " " +
         C(kH) + "\" width=\"100%\" role=\"img\" aria-label=\"" + Esc(label) +
         "\" xmlns=\"http://www.w3.org/2000/svg\" preserveAspectRatio=\"xMidYMid meet\"" +
         std::string(extra_attrs) + ">";
}

std::string Title(std::string_view text) { return "<title>" + Esc(text) + "</title>"; }

std::string LegendItem(std::string_view swatch_class, std::string_view label,
                       std::string_view style) {
  std::string s = "<span class=\"key\"><i class=\"sw " + std::string(swatch_class) + "\"";
  if (!style.empty()) s += " style=\"" + std::string(style) + "\"";
  return s + "></i>" + Esc(label) + "</span>";
}


std::string Section(std::string_view id, std::string_view title, std::string_view subtitle,
                    const std::string& body) {
  return "<section class=\"card\" id=\"" + std::string(id) + "\"><h2>" + Esc(title) + "</h2>" +
         (subtitle.empty() ? "" : "<p class=\"sub\">" + std::string(subtitle) + "</p>") + body +
         "</section>";
}

std::string Unavailable(std::string_view id, const std::vector<std::string>& notes) {
  std::string s = "<div class=\"unavailable\" id=\"" + std::string(id) +
                  "-unavailable\"><strong>Chart unavailable.</strong><ul>";
  for (const auto& n : notes) s += "<li>" + Esc(n) + "</li>";
  return s + "</ul></div>";
}

std::string NotesBox(const std::vector<std::string>& notes, std::string_view what) {
  std::string out = "<div class=\"note\" role=\"note\"><strong>" + Esc(what) + "</strong><ul>";
  for (const auto& n : notes) out += "<li>" + Esc(n) + "</li>";
  return out + "</ul></div>";
}

std::string_view ChartsCss() { return kChartsCss; }
std::string_view ErrorHookJs() { return kErrorHookJs; }
std::string_view HoverJs() { return kHoverJs; }

}  // namespace tollgate::charts
