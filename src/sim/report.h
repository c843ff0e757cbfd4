// The self-contained HTML report of a simulation (`tollgate simulate ... --report out.html`).
#ifndef TOLLGATE_SIM_REPORT_H_
#define TOLLGATE_SIM_REPORT_H_

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace tollgate::sim {

// The share of legitimate requests of one network that may be denied before the report's verdict
// for that network fails ("4g false denies 7.3% (> 5%)").
inline constexpr double kReportFalseDenyLimit = 0.05;

// Renders a simulation result (the JSON of docs/simulate-result-schema.md, schema version 1) as
// one self-contained HTML page: inline CSS, charts as inline SVG drawn here (present without
// JavaScript), no external resources of any kind. A small inline script adds hover tooltips and
// records script errors in the `data-script-errors` attribute of <html> (count) and <body>
// (messages); it sets `data-scripts-ran="1"` on <body> when it has run.
//
// The page has, in order:
//  - a header: scenario, description, policy and policy file, seed, duration, users, decisions,
//    and verdict lines computed from the result: false-deny rate per network against
//    kReportFalseDenyLimit, admitted load against the backend capacity, and for each attacker
//    whether it was throttled;
//  - <svg id="chart-aggregate">: admitted cost per second (aggregate.series) against the backend
//    capacity line, seconds above capacity shaded, the peak marked; without a capacity (null) the
//    line is left out and the chart says so;
//  - <svg id="chart-tokens">: the sample user's tokens remaining over time, denied requests
//    marked;
//  - <svg id="chart-deny">: false-deny rate by message type (groups) and network (bars);
//  - the attacker table, deny share by layer (bars), and the shadow layers' would-deny counts.
// Each chart's <svg> carries data-points (how many input points it plots); series with more
// points than the chart has pixels are reduced (max per bucket for load, min/max envelope for
// tokens) and say so in their caption.
//
// Validation: every field used is checked for presence and type. A missing or ill-typed field
// does not stop the rendering: the part that needs it is replaced by a note, and all such notes
// are listed at the top of the page ("missing field aggregate.series", "invalid field
// attackers[0].sent: expected a number, got a string"). A result that is not a JSON object gives
// a page with only that note. Every string from the result is HTML-escaped wherever it appears.
//
// Never throws (an exception from a bug or from running out of memory while rendering is caught
// and becomes a minimal page that names it).
[[nodiscard]] std::string RenderSimulationReport(const nlohmann::json& result);

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIM_REPORT_H_
