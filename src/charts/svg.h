// Static SVG charts, drawn on the server (the simulator report, src/sim/report.cc): number
// formatting, round axes, the plot box, axes with ticks and titles, and the small page pieces
// (sections, legends, notes) both tollgate pages share. The live counterpart for pages that redraw
// in the browser (the dashboard, src/dashboard/) is assets/charts.js, which draws the same markup
// (classes, geometry, axis algorithm) from JavaScript; assets/charts.css styles both.
#ifndef TOLLGATE_CHARTS_SVG_H_
#define TOLLGATE_CHARTS_SVG_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::charts {

// ---------------------------------------------------------------------------------------------
// Text and numbers (never throw except std::bad_alloc; non-finite values print as "n/a" or 0).

// HTML-escapes & < > " ' and replaces control characters other than tab and newline by spaces:
// safe in text and in double- or single-quoted attributes.
[[nodiscard]] std::string Esc(std::string_view s);

// printf into a std::string, truncated at 511 bytes.
[[nodiscard]] __attribute__((format(printf, 1, 2))) std::string Fmt(const char* fmt, ...);

// An SVG coordinate with at most one decimal ("12", "12.5"; non-finite -> "0").
[[nodiscard]] std::string C(double v);

// Drops trailing zeros of a fixed-point rendering ("1.50" -> "1.5", "2.00" -> "2").
[[nodiscard]] std::string Trim(std::string s);

// Thousands separators on the integer part of a fixed rendering with `decimals` decimals.
[[nodiscard]] std::string Grouped(double v, int decimals);

// Counts and cost amounts: integers grouped ("1,320"), fractions with up to two decimals.
[[nodiscard]] std::string Count(double v);

// Axis labels: 1.5k, 150k, 2M.
[[nodiscard]] std::string Compact(double v);

// A rate in [0, 1] as a percentage with 1 to 3 significant decimals ("7.3%", "0.042%").
[[nodiscard]] std::string Pct(double rate);

// A short time: 310 ms, 4.2 s, 612 s.
[[nodiscard]] std::string Secs(double s);

// A duration: 90 s, 10 min, 1 h, 2 h 30 min.
[[nodiscard]] std::string Span(double s);

// A comma-separated list of numbers with up to four decimals (data attributes for hover.js).
[[nodiscard]] std::string NumberList(const std::vector<double>& v);

// ---------------------------------------------------------------------------------------------
// Geometry

inline constexpr double kW = 1120;  // default SVG viewBox width
inline constexpr double kH = 380;   // default SVG viewBox height
inline constexpr double kLeft = 78, kRight = 28, kTop = 26, kBottom = 56;  // plot margins

struct Axis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;  // ascending, within [lo, hi]
};

// Round tick steps (1, 2, 2.5, 5 x 10^k) covering [lo, hi] with about `target` (>= 1) intervals;
// lo and hi are widened to whole steps. Degenerate or non-finite ranges give a usable axis.
// assets/charts.js niceAxis() is the same algorithm.
[[nodiscard]] Axis NiceAxis(double lo, double hi, int target);

// The pixel box of a plot inside a width x height viewBox (the margins above) and its axes.
struct Plot {
  double w = kW, h = kH;
  double x0 = kLeft, x1 = kW - kRight, y0 = kTop, y1 = kH - kBottom;
  Axis xa, ya;
  double X(double v) const { return x0 + (v - xa.lo) / (xa.hi - xa.lo) * (x1 - x0); }
  double Y(double v) const { return y1 - (v - ya.lo) / (ya.hi - ya.lo) * (y1 - y0); }
};

using Labeler = std::function<std::string(double)>;

// <g class="axes">: horizontal grid lines with y labels, x tick marks with labels (when
// `xticks`), the two axis lines, the x title (when not empty) and the rotated y title.
[[nodiscard]] std::string Axes(const Plot& p, const Labeler& xlabel, const Labeler& ylabel,
                               std::string_view xtitle, std::string_view ytitle,
                               bool xticks = true);

// The opening <svg class="chart"> tag, kW x kH, with an accessible label and extra attributes
// (already escaped, starting with a space).
[[nodiscard]] std::string SvgOpen(std::string_view id, std::string_view label,
                                  std::string_view extra_attrs);

// <title> (a tooltip once hover.js has run).
[[nodiscard]] std::string Title(std::string_view text);

// A legend entry: a swatch (class `sw <swatch_class>`, optional inline style) and a label.
[[nodiscard]] std::string LegendItem(std::string_view swatch_class, std::string_view label,
                                     std::string_view style = "");

// <section class="card" id=...> with a title, a subtitle (HTML, not escaped) and a body.
[[nodiscard]] std::string Section(std::string_view id, std::string_view title,
                                  std::string_view subtitle, const std::string& body);

// The box that replaces a chart whose data is missing (id "<id>-unavailable"), listing why.
[[nodiscard]] std::string Unavailable(std::string_view id, const std::vector<std::string>& notes);

// A note box: a bold heading and a list.
[[nodiscard]] std::string NotesBox(const std::vector<std::string>& notes, std::string_view what);

// ---------------------------------------------------------------------------------------------
// Browser assets (src/charts/assets/, embedded at build time)

// The look of both pages: page, cards, tiles, tables, legends, SVG chart classes, tooltip.
[[nodiscard]] std::string_view ChartsCss();
// Records script errors where a headless browser's DOM dump shows them: data-script-errors on
// <html> and <body> (count), data-script-error-log on <body>. To run first, in <head>.
[[nodiscard]] std::string_view ErrorHookJs();
// Defines window.tollgateHover(root): turns the <title>s under `root` into tooltips in #tip and
// adds the crosshair readout to svg[data-hover=series] (data-ts/-vs/-x0/-x1/-t0/-t1/-unit).
[[nodiscard]] std::string_view HoverJs();

}  // namespace tollgate::charts

#endif  // TOLLGATE_CHARTS_SVG_H_
