#include "sim/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>

namespace tollgate::sim {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

json LoadFixture(const std::string& name) {
  std::ifstream in(std::string(TOLLGATE_SIM_TESTDATA) + "/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// The opening tag of the element with this id ("" if absent).
std::string OpeningTag(const std::string& html, const std::string& id) {
  size_t at = html.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  size_t start = html.rfind('<', at);
  size_t end = html.find('>', at);
  return html.substr(start, end - start + 1);
}

void ExpectWellFormedPage(const std::string& html) {
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_THAT(html, HasSubstr("</html>"));
  // Exactly our two inline scripts.
  EXPECT_EQ(Count(html, "<script>"), 2u);
  EXPECT_EQ(Count(html, "<script"), 2u);
}

TEST(SimulationReportTest, FullFixtureHasTheThreeChartsWithTheirData) {
  json result = LoadFixture("result_full.json");
  ASSERT_TRUE(result.is_object());
  std::string html = RenderSimulationReport(result);
  ExpectWellFormedPage(html);

  // (a) aggregate: every second of the series, the capacity line, shaded seconds, the peak.
  std::string agg = OpeningTag(html, "chart-aggregate");
  ASSERT_THAT(agg, HasSubstr("<svg"));
  EXPECT_THAT(agg, HasSubstr("data-points=\"600\""));
  EXPECT_THAT(agg, HasSubstr("data-capacity=\"150000\""));
  EXPECT_THAT(html, HasSubstr("id=\"aggregate-series\""));
  EXPECT_THAT(html, HasSubstr("id=\"capacity-line\""));
  EXPECT_THAT(html, HasSubstr("<rect class=\"over-band\""));
  EXPECT_THAT(html, HasSubstr("id=\"peak-marker\""));
  EXPECT_THAT(html, HasSubstr("peak 173.9k/s at 300 s"));
  // The path has one horizontal segment per plotted second.
  std::string path = OpeningTag(html, "aggregate-series");
  EXPECT_EQ(Count(path, "H"), 600u);

  // (b) tokens: all points, denials marked.
  std::string tokens = OpeningTag(html, "chart-tokens");
  ASSERT_THAT(tokens, HasSubstr("<svg"));
  EXPECT_THAT(tokens, HasSubstr("data-points=\"6540\""));
  EXPECT_THAT(tokens, HasSubstr("data-denied=\"280\""));
  EXPECT_THAT(html, HasSubstr("id=\"denied-markers\""));
  EXPECT_GT(Count(html, "<g class=\"x\" data-count="), 10u);

  // (c) deny rate: one bar per (type, network) row, with its values.
  std::string deny = OpeningTag(html, "chart-deny");
  ASSERT_THAT(deny, HasSubstr("<svg"));
  EXPECT_THAT(deny, HasSubstr("data-points=\"12\""));
  EXPECT_EQ(Count(html, "<rect class=\"bar\""), 12u);
  EXPECT_THAT(html, HasSubstr("data-type=\"input\" data-network=\"4g\" data-rate=\"0.073"));
  EXPECT_THAT(html, HasSubstr(">7.3%</text>"));

  // Header and verdicts.
  EXPECT_THAT(html, HasSubstr("<h1 id=\"scenario\">jitter-4g-broken</h1>"));
  EXPECT_THAT(html, HasSubstr("4G false denies 5.77% (&gt; 5%)"));
  EXPECT_THAT(html, HasSubstr("wifi false denies 0.3% (\xe2\x89\xa4 5%)"));
  EXPECT_THAT(html, HasSubstr("backend over capacity for 10 s"));
  EXPECT_THAT(html, HasSubstr("attacker low-and-slow never throttled"));
  EXPECT_THAT(html, HasSubstr("attacker flood throttled after 310 ms"));

  // (d) tables.
  EXPECT_THAT(html, HasSubstr("id=\"attackers-table\""));
  EXPECT_THAT(html, HasSubstr("<span class=\"never\">never</span>"));
  EXPECT_THAT(html, HasSubstr("id=\"layers-table\""));
  EXPECT_THAT(html, HasSubstr("<span class=\"pill shadow\">shadow</span>"));
  EXPECT_THAT(html, HasSubstr("id=\"shadow-table\""));
  EXPECT_THAT(html, HasSubstr("2,212"));

  // A complete result has no notes.
  EXPECT_THAT(html, Not(HasSubstr("id=\"report-notes\"")));
  EXPECT_THAT(html, Not(HasSubstr("class=\"unavailable\"")));
}

TEST(SimulationReportTest, NoExternalResources) {
  std::string html = RenderSimulationReport(LoadFixture("result_full.json"));
  std::string without_ns = html;
  const std::string ns = "xmlns=\"http://www.w3.org/2000/svg\"";
  for (size_t p = without_ns.find(ns); p != std::string::npos; p = without_ns.find(ns)) {
    without_ns.erase(p, ns.size());
  }
  EXPECT_THAT(without_ns, Not(HasSubstr("http:")));
  EXPECT_THAT(without_ns, Not(HasSubstr("https:")));
  EXPECT_THAT(without_ns, Not(HasSubstr("//cdn")));
  EXPECT_THAT(html, Not(HasSubstr(" src=")));
  EXPECT_THAT(html, Not(HasSubstr(" href=")));
  EXPECT_THAT(html, Not(HasSubstr("url(")));
  EXPECT_THAT(html, Not(HasSubstr("@import")));
  EXPECT_THAT(html, Not(HasSubstr("<link")));
  EXPECT_THAT(html, Not(HasSubstr("<img")));
}

TEST(SimulationReportTest, EscapesHostileStrings) {
  json result = LoadFixture("result_capacity_null.json");
  result["scenario"] = "<script>alert(1)</script>";
  result["description"] = "\"quoted\" & 'single' </p><img src=x onerror=alert(2)>";
  result["policy"] = "\"><svg onload=alert(3)>";
  result["policy_file"] = "a&b<c>.yaml";
  result["legit"]["by_type_network"][0]["type"] = "<b>bold</b>";
  result["legit"]["by_type_network"][0]["network"] = "\" onmouseover=\"alert(4)";
  result["sample_user"]["user"] = "</code><script>alert(5)</script>";
  result["layers"][0]["layer"] = "<iframe>";
  result["attackers"] = json::array({{{"name", "<x>"},
                                      {"kind", "'k'"},
                                      {"identities", 1},
                                      {"start_s", 0},
                                      {"end_s", 1},
                                      {"sent", 1},
                                      {"admitted", 1},
                                      {"admitted_cost", 1},
                                      {"admitted_share", 1},
                                      {"time_to_throttle_s", nullptr}}});
  result["shadow"] =
      json::array({{{"layer", "</table>"}, {"would_deny", 1}, {"would_deny_rate", 0.1}}});
  std::string html = RenderSimulationReport(result);
  ExpectWellFormedPage(html);
  for (const char* raw : {"<script>alert", "<img", "<svg onload", "<b>bold", "onmouseover=\"alert",
                          "<iframe", "<x>", "</table></td>", "a&b"}) {
    EXPECT_THAT(html, Not(HasSubstr(raw))) << raw;
  }
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(html, HasSubstr("<title>tollgate simulation: &lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(html, HasSubstr("&quot;quoted&quot; &amp; &#39;single&#39;"));
  EXPECT_THAT(html, HasSubstr("data-network=\"&quot; onmouseover=&quot;alert(4)\""));
  EXPECT_THAT(html, HasSubstr("a&amp;b&lt;c&gt;.yaml"));
  EXPECT_THAT(html, HasSubstr("&lt;iframe&gt;"));
}

TEST(SimulationReportTest, CapacityNullDrawsNoCapacityLine) {
  json result = LoadFixture("result_capacity_null.json");
  ASSERT_TRUE(result["aggregate"]["capacity"].is_null());
  std::string html = RenderSimulationReport(result);
  ExpectWellFormedPage(html);
  std::string agg = OpeningTag(html, "chart-aggregate");
  ASSERT_THAT(agg, HasSubstr("<svg"));
  EXPECT_THAT(agg, HasSubstr("data-points=\"20\""));
  EXPECT_THAT(agg, Not(HasSubstr("data-capacity")));
  EXPECT_THAT(html, Not(HasSubstr("id=\"capacity-line\"")));
  EXPECT_THAT(html, Not(HasSubstr("<rect class=\"over-band\"")));
  EXPECT_THAT(html, HasSubstr("id=\"capacity-unknown\""));
  EXPECT_THAT(html, HasSubstr("backend capacity unknown: overload not judged"));
  EXPECT_THAT(html, HasSubstr("id=\"peak-marker\""));
  // Null is a value here, not a missing field.
  EXPECT_THAT(html, Not(HasSubstr("id=\"report-notes\"")));
  EXPECT_THAT(html, HasSubstr("No attackers in this scenario."));
  EXPECT_THAT(html, HasSubstr("No shadow layers."));
  // Few points: both denials are marked.
  EXPECT_THAT(OpeningTag(html, "chart-tokens"), HasSubstr("data-denied=\"2\""));
  EXPECT_EQ(Count(html, "<g class=\"x\" data-count=\"1\"><title>denied at t = 1."), 2u);
  // The sample ends at 15.2 s of a 20 s run: the axis ends with the sample, and says so.
  EXPECT_THAT(html, HasSubstr("the sample covers t = 500 ms to 15.2 s of 20 s"));
}

TEST(SimulationReportTest, CloseDenialsShareAMarker) {
  json result = LoadFixture("result_capacity_null.json");
  json points = json::array();
  for (int i = 0; i < 200; ++i) points.push_back(json::array({i * 0.1, i % 10, 1}));
  for (int i = 0; i < 5; ++i) points.push_back(json::array({10.001 + i * 0.001, 0, 0}));
  result["sample_user"]["points"] = points;
  std::string html = RenderSimulationReport(result);
  EXPECT_THAT(OpeningTag(html, "chart-tokens"), HasSubstr("data-denied=\"5\""));
  EXPECT_EQ(Count(html, "<g class=\"x\" data-count="), 1u);
  EXPECT_THAT(html, HasSubstr("<g class=\"x\" data-count=\"5\"><title>5 denied from t = 10 s"));
}

TEST(SimulationReportTest, LongTypeNamesAreShortenedOnCharacterBoundaries) {
  json result = LoadFixture("result_capacity_null.json");
  // "x", then two-byte characters (é) at odd offsets.
  std::string name = "x";
  for (int i = 0; i < 400; ++i) name += "\xc3\xa9";
  result["legit"]["by_type_network"][0]["type"] = name;
  std::string html = RenderSimulationReport(result);
  size_t at = html.find("<text class=\"group-label\"");
  ASSERT_NE(at, std::string::npos);
  std::string label = html.substr(html.find('>', at) + 1);
  label = label.substr(0, label.find("</text>"));
  EXPECT_LT(label.size(), name.size());
  EXPECT_EQ(label.substr(label.size() - 3), "\xe2\x80\xa6");
  EXPECT_EQ((label.size() - 4) % 2, 0u) << "cut inside a two-byte character";
  // The full name is still in the bar's data attribute and tooltip.
  EXPECT_THAT(html, HasSubstr("data-type=\"" + name + "\""));
}

TEST(SimulationReportTest, CapacityFallsBackToBackendCapacity) {
  json result = LoadFixture("result_capacity_null.json");
  result["aggregate"].erase("capacity");
  result["backend_capacity"] = 225;
  std::string html = RenderSimulationReport(result);
  EXPECT_THAT(html, HasSubstr("id=\"capacity-line\""));
  EXPECT_THAT(OpeningTag(html, "chart-aggregate"), HasSubstr("data-capacity=\"225\""));
  EXPECT_THAT(html, HasSubstr("missing field aggregate.capacity"));
}

TEST(SimulationReportTest, MissingSectionsBecomeNotes) {
  std::string html = RenderSimulationReport(json{{"schema", 1}});
  ExpectWellFormedPage(html);
  EXPECT_THAT(html, HasSubstr("id=\"report-notes\""));
  for (const char* field : {"scenario", "policy", "seed", "duration_s", "users", "decisions",
                            "legit", "aggregate", "sample_user", "attackers", "layers"}) {
    EXPECT_THAT(html, HasSubstr(std::string("missing field ") + field + "<")) << field;
  }
  for (const char* id : {"chart-aggregate", "chart-tokens", "chart-deny"}) {
    EXPECT_THAT(html, HasSubstr(std::string("id=\"") + id + "-unavailable\"")) << id;
    EXPECT_THAT(html, Not(HasSubstr(std::string("id=\"") + id + "\""))) << id;
  }
  // "shadow" is optional.
  EXPECT_THAT(html, Not(HasSubstr("missing field shadow")));
}

TEST(SimulationReportTest, MissingFieldInsideASectionNamesIt) {
  json result = LoadFixture("result_full.json");
  result["aggregate"].erase("series");
  result["sample_user"].erase("points");
  result["legit"]["by_type_network"][3].erase("network");
  std::string html = RenderSimulationReport(result);
  EXPECT_THAT(html, HasSubstr("missing field aggregate.series"));
  EXPECT_THAT(html, HasSubstr("missing field sample_user.points"));
  EXPECT_THAT(html, HasSubstr("missing field legit.by_type_network[3].network"));
  EXPECT_THAT(html, HasSubstr("id=\"chart-aggregate-unavailable\""));
  EXPECT_THAT(html, HasSubstr("id=\"chart-tokens-unavailable\""));
  // The deny chart still draws the other 11 rows.
  EXPECT_THAT(OpeningTag(html, "chart-deny"), HasSubstr("data-points=\"11\""));
}

TEST(SimulationReportTest, IllTypedFieldsBecomeNotes) {
  json result = LoadFixture("result_full.json");
  result["scenario"] = 42;
  result["seed"] = "one";
  result["aggregate"]["series"] = "oops";
  result["sample_user"]["points"][5] = json::array({1, "x", 1});
  result["sample_user"]["points"][6] = "point";
  result["attackers"][0]["sent"] = "many";
  result["layers"] = json::object();
  result["legit"]["by_type_network"][0]["false_deny_rate"] = json::array();
  result["shadow"] = 7;
  std::string html = RenderSimulationReport(result);
  ExpectWellFormedPage(html);
  EXPECT_THAT(html, HasSubstr("invalid field scenario: expected a string, got a number"));
  EXPECT_THAT(html, HasSubstr("invalid field seed: expected a number, got a string"));
  EXPECT_THAT(html, HasSubstr("invalid field aggregate.series: expected an array, got a string"));
  EXPECT_THAT(html, HasSubstr("invalid field sample_user.points[5]: expected [t_s, tokens, allowed "
                              "1|0], got an array"));
  EXPECT_THAT(html, HasSubstr("2 of 6540 points of sample_user.points are invalid"));
  EXPECT_THAT(html, HasSubstr("invalid field attackers[0].sent: expected a number, got a string"));
  EXPECT_THAT(html, HasSubstr("invalid field layers: expected an array, got an object"));
  EXPECT_THAT(html, HasSubstr("invalid field legit.by_type_network[0].false_deny_rate: expected a "
                              "number, got an array"));
  EXPECT_THAT(html, HasSubstr("invalid field shadow: expected an array, got a number"));
  // The tokens chart survives its two bad points.
  EXPECT_THAT(OpeningTag(html, "chart-tokens"), HasSubstr("data-points=\"6538\""));
  // The row with a bad rate still has sent and denied, so its rate is computed.
  EXPECT_THAT(OpeningTag(html, "chart-deny"), HasSubstr("data-points=\"12\""));
}

TEST(SimulationReportTest, NonFiniteNumbersAreRejected) {
  json result = LoadFixture("result_capacity_null.json");
  result["aggregate"]["series"][3] = std::numeric_limits<double>::quiet_NaN();
  result["users"] = std::numeric_limits<double>::infinity();
  std::string html = RenderSimulationReport(result);
  EXPECT_THAT(html, HasSubstr("invalid field aggregate.series[3]: not a finite number"));
  EXPECT_THAT(html, HasSubstr("invalid field users: not a finite number"));
  EXPECT_THAT(html, HasSubstr("id=\"chart-aggregate-unavailable\""));
}

TEST(SimulationReportTest, NotAnObject) {
  for (const json& j : {json(), json::array({1, 2}), json("text"), json(3.5), json(true)}) {
    std::string html = RenderSimulationReport(j);
    ExpectWellFormedPage(html);
    EXPECT_THAT(html, HasSubstr("the simulation result is not a JSON object (got " +
                                std::string(j.is_null() ? "null" : "")));
  }
}

TEST(SimulationReportTest, UnknownSchemaVersionIsNoted) {
  json result = LoadFixture("result_capacity_null.json");
  result["schema"] = 2;
  EXPECT_THAT(RenderSimulationReport(result), HasSubstr("unknown schema version 2"));
  result["schema"] = "1";
  EXPECT_THAT(RenderSimulationReport(result),
              HasSubstr("invalid field schema: expected an integer, got a string"));
}

TEST(SimulationReportTest, LongSeriesAreReducedButCounted) {
  json result = LoadFixture("result_capacity_null.json");
  json series = json::array();
  json points = json::array();
  for (int i = 0; i < 100000; ++i) series.push_back(1000 + (i % 977));
  for (int i = 0; i < 50000; ++i) points.push_back(json::array({i * 0.01, i % 20, i % 50 ? 1 : 0}));
  result["aggregate"]["series"] = series;
  result["aggregate"]["peak"] = 1976;
  result["aggregate"]["peak_at_s"] = 976;
  result["sample_user"]["points"] = points;
  std::string html = RenderSimulationReport(result);
  EXPECT_THAT(OpeningTag(html, "chart-aggregate"), HasSubstr("data-points=\"100000\""));
  EXPECT_THAT(OpeningTag(html, "chart-tokens"), HasSubstr("data-points=\"50000\""));
  EXPECT_THAT(OpeningTag(html, "chart-tokens"), HasSubstr("data-denied=\"1000\""));
  EXPECT_THAT(html, HasSubstr("max of each"));
  EXPECT_THAT(html, HasSubstr("min/max envelope shown"));
  EXPECT_LT(html.size(), 1'000'000u);
}

TEST(SimulationReportTest, EmptyArraysAreHandled) {
  json result = LoadFixture("result_capacity_null.json");
  result["aggregate"]["series"] = json::array();
  result["sample_user"]["points"] = json::array();
  result["legit"]["by_type_network"] = json::array();
  result["layers"] = json::array();
  std::string html = RenderSimulationReport(result);
  EXPECT_THAT(html, HasSubstr("aggregate.series is empty"));
  EXPECT_THAT(html, HasSubstr("sample_user.points is empty"));
  EXPECT_THAT(html, HasSubstr("legit.by_type_network is empty"));
  EXPECT_THAT(html, HasSubstr("No layers."));
}

// Replaces random nodes of the fixture with values of random types: rendering never throws and
// always produces a whole page.
TEST(SimulationReportTest, SurvivesRandomlyMangledResults) {
  json base = LoadFixture("result_capacity_null.json");
  std::mt19937 rng(12345);
  const json replacements[] = {json(),
                               json(-1),
                               json(0),
                               json(1e308),
                               json(-1e308),
                               json("s"),
                               json(true),
                               json::array(),
                               json::object(),
                               json::array({json::array({1})}),
                               json(18446744073709551615u)};
  for (int iter = 0; iter < 400; ++iter) {
    json result = base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      // Walk down a random path.
      json* node = &result;
      while ((node->is_object() || node->is_array()) && !node->empty() && rng() % 3 != 0) {
        size_t pick = rng() % node->size();
        auto it = node->begin();
        std::advance(it, static_cast<std::ptrdiff_t>(pick));
        node = &*it;
      }
      *node = replacements[rng() % std::size(replacements)];
    }
    std::string html = RenderSimulationReport(result);
    ASSERT_THAT(html, HasSubstr("</html>")) << result.dump();
    ASSERT_EQ(Count(html, "<script"), 2u) << result.dump();
  }
}

}  // namespace
}  // namespace tollgate::sim
