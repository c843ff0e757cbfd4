// Opens simulation reports (src/sim/report.h) in headless Chromium, Debian's `chromium` package
// (scripts/install-deps.sh installs it; without it these tests fail, they do not skip):
//  - `--dump-dom` gives the live DOM after the page's scripts ran: the three chart SVGs are there
//    with their data, the page's script-error hook (window.onerror, recorded in data-script-errors
//    on <html> and <body>) recorded nothing, and the hover script ran to its end;
//  - Chromium's own console log (--enable-logging=stderr) has no uncaught errors, console errors
//    or failed resource loads;
//  - `--screenshot` produces a PNG of the requested size, `--print-to-pdf` a PDF.
// A page with injected errors checks that both detectors see them. Outputs (HTML, DOM dumps,
// Chromium logs, screenshots) stay in the build directory under report_chromium/.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "sim/report.h"
#include "tests/support/chromium.h"

namespace tollgate::sim {
namespace {

namespace fs = std::filesystem;
using tollgate::testing::FindChromium;
using tollgate::testing::Quote;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kChromiumTimeoutSeconds = 90;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

fs::path OutDir() {
  fs::path dir = fs::path(TOLLGATE_REPORT_OUT_DIR);
  fs::create_directories(dir);
  return dir;
}

// A temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "tollgate-chromium-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

struct ChromiumRun {
  int exit_code = -1;  // 124: timed out
  std::string out;     // stdout (the DOM with --dump-dom)
  std::string err;     // Chromium's log, including the page's console messages
};

// Runs headless Chromium on `html` with `mode_args`, as root-safe as CI needs (--no-sandbox), in a
// fresh profile directory that is removed afterwards, bounded by a timeout. stdout and stderr are
// kept next to the page as <stem>.<tag>.out / .err.
ChromiumRun RunChromium(const fs::path& html, const std::string& mode_args,
                        const std::string& tag) {
  ChromiumRun run;
  std::string chromium = FindChromium();
  if (chromium.empty()) return run;
  TempDir profile;
  if (profile.path().empty()) return run;
  fs::path base = html.parent_path() / (html.stem().string() + "." + tag);
  fs::path out = base.string() + ".out", err = base.string() + ".err";
  std::string cmd = "timeout -k 10 " + std::to_string(kChromiumTimeoutSeconds) + " " +
                    Quote(chromium) +
                    " --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage"
                    " --enable-logging=stderr --v=0 --no-first-run --no-default-browser-check"
                    " --disable-extensions --disable-background-networking --disable-sync"
                    " --user-data-dir=" +
                    Quote(profile.path().string()) + " " + mode_args + " " +
                    Quote("file://" + fs::absolute(html).string()) + " >" + Quote(out.string()) +
                    " 2>" + Quote(err.string()) + " </dev/null";
  int status = std::system(cmd.c_str());
  run.exit_code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = ReadFile(out);
  run.err = ReadFile(err);
  return run;
}

// The opening tag of the element with this id in `html` ("" if absent).
std::string OpeningTag(const std::string& html, const std::string& id) {
  size_t at = html.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  size_t start = html.rfind('<', at);
  size_t end = html.find('>', at);
  return html.substr(start, end - start + 1);
}

// The value of attribute `name` in an opening tag ("" if absent).
std::string Attr(const std::string& tag, const std::string& name) {
  std::string key = " " + name + "=\"";
  size_t at = tag.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  size_t end = tag.find('"', at);
  return end == std::string::npos ? "" : tag.substr(at, end - at);
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t p = haystack.find(needle); p != std::string::npos;
       p = haystack.find(needle, p + needle.size())) {
    ++n;
  }
  return n;
}

// Script errors recorded by the page's own hook, as the dumped DOM shows them.
std::vector<std::string> DomProblems(const std::string& dom) {
  std::vector<std::string> problems;
  size_t h = dom.find("<html"), b = dom.find("<body");
  std::string html_tag = h == std::string::npos ? "" : dom.substr(h, dom.find('>', h) - h + 1);
  std::string body_tag = b == std::string::npos ? "" : dom.substr(b, dom.find('>', b) - b + 1);
  if (Attr(html_tag, "data-script-errors") != "0") {
    problems.push_back("<html data-script-errors=\"" + Attr(html_tag, "data-script-errors") +
                       "\">");
  }
  if (Attr(body_tag, "data-script-errors") != "0") {
    problems.push_back("<body data-script-errors=\"" + Attr(body_tag, "data-script-errors") +
                       "\">: " + Attr(body_tag, "data-script-error-log"));
  }
  if (Attr(body_tag, "data-scripts-ran") != "1") {
    problems.push_back("the page's script did not run to its end (no data-scripts-ran=\"1\")");
  }
  return problems;
}

// Uncaught exceptions, console errors and failed loads in Chromium's log.
std::vector<std::string> ConsoleProblems(const std::string& log) {
  std::vector<std::string> problems;
  std::stringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    bool console = line.find(":CONSOLE") != std::string::npos;
    if (line.find("Uncaught") != std::string::npos ||
        line.find("ERROR:CONSOLE") != std::string::npos ||
        (console && (line.find("Error") != std::string::npos ||
                     line.find("net::ERR_") != std::string::npos))) {
      problems.push_back("console: " + line);
    }
  }
  return problems;
}

// The three charts and their data, in the DOM Chromium built.
void ExpectChartsInLiveDom(const std::string& dom, const nlohmann::json& result) {
  std::string agg = OpeningTag(dom, "chart-aggregate");
  std::string tokens = OpeningTag(dom, "chart-tokens");
  std::string deny = OpeningTag(dom, "chart-deny");
  ASSERT_THAT(agg, HasSubstr("<svg")) << "no #chart-aggregate <svg> in the DOM";
  ASSERT_THAT(tokens, HasSubstr("<svg")) << "no #chart-tokens <svg> in the DOM";
  ASSERT_THAT(deny, HasSubstr("<svg")) << "no #chart-deny <svg> in the DOM";

  // Each chart plots every input point (reduced ones still count them).
  EXPECT_EQ(Attr(agg, "data-points"), std::to_string(result["aggregate"]["series"].size()));
  EXPECT_EQ(Attr(tokens, "data-points"), std::to_string(result["sample_user"]["points"].size()));
  EXPECT_EQ(Attr(deny, "data-points"), std::to_string(result["legit"]["by_type_network"].size()));

  // The drawn shapes are there: the load path, the tokens path, one bar per row.
  EXPECT_GT(Attr(OpeningTag(dom, "aggregate-series"), "d").size(), 100u);
  EXPECT_GT(Attr(OpeningTag(dom, "tokens-series"), "d").size(), 10u);
  EXPECT_THAT(OpeningTag(dom, "peak-marker"), HasSubstr("<g"));
  EXPECT_EQ(Count(dom, "<rect class=\"bar\""), result["legit"]["by_type_network"].size());
  size_t denied = 0;
  for (const auto& p : result["sample_user"]["points"]) denied += p[2] == 0 ? 1 : 0;
  EXPECT_EQ(Attr(tokens, "data-denied"), std::to_string(denied));
  if (denied > 0) {
    EXPECT_GT(Count(dom, "<g class=\"x\" data-count="), 0u);
  }
  if (result["aggregate"]["capacity"].is_number()) {
    EXPECT_THAT(OpeningTag(dom, "capacity-line"), HasSubstr("<line"));
  } else {
    EXPECT_THAT(OpeningTag(dom, "capacity-unknown"), HasSubstr("<span"));
  }
  // The hover script turned every SVG <title> into a tooltip: only the page's <title> is left.
  EXPECT_EQ(Count(dom, "<title>"), 1u);
  EXPECT_THAT(dom, ::testing::Not(HasSubstr("id=\"report-notes\"")));
  // Nothing is loaded from anywhere.
  for (const char* attr : {" src=", " href=", "url(", "@import"}) {
    EXPECT_THAT(dom, ::testing::Not(HasSubstr(attr))) << attr;
  }
}

// PNG signature and IHDR size.
void ExpectPng(const fs::path& path, uint32_t width, uint32_t height) {
  std::string png = ReadFile(path);
  ASSERT_GT(png.size(), 30'000u) << path << " is (nearly) empty";
  ASSERT_EQ(png.compare(0, 8, "\x89PNG\r\n\x1a\n"), 0) << path << " is not a PNG";
  auto be32 = [&](size_t at) {
    return (uint32_t{static_cast<unsigned char>(png[at])} << 24) |
           (uint32_t{static_cast<unsigned char>(png[at + 1])} << 16) |
           (uint32_t{static_cast<unsigned char>(png[at + 2])} << 8) |
           uint32_t{static_cast<unsigned char>(png[at + 3])};
  };
  EXPECT_EQ(be32(16), width);
  EXPECT_EQ(be32(20), height);
}

nlohmann::json LoadFixture(const std::string& name) {
  return nlohmann::json::parse(ReadFile(fs::path(TOLLGATE_SIM_TESTDATA) / name), nullptr, false);
}

class ReportChromiumTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(FindChromium().empty())
        << "chromium not found (set TOLLGATE_CHROMIUM or run scripts/install-deps.sh, which "
           "installs Debian's chromium package)";
  }

  // Dumps the DOM of the report `html` of `result`; checks the charts and script errors.
  void CheckPage(const fs::path& html, const nlohmann::json& result) {
    ChromiumRun run = RunChromium(html, "--dump-dom", "dom");
    EXPECT_EQ(run.exit_code, 0) << "chromium --dump-dom failed; its log:\n" << run.err;
    EXPECT_THAT(run.out, HasSubstr("</html>")) << "no DOM dumped; chromium's log:\n" << run.err;
    ExpectChartsInLiveDom(run.out, result);
    EXPECT_THAT(DomProblems(run.out), IsEmpty());
    EXPECT_THAT(ConsoleProblems(run.err), IsEmpty());
  }

  // A full-page screenshot of `html` next to it (<stem>.png), 1280 px wide.
  void CheckScreenshot(const fs::path& html) {
    fs::path png = html.parent_path() / (html.stem().string() + ".png");
    fs::remove(png);
    ChromiumRun shot = RunChromium(
        html, "--hide-scrollbars --window-size=1280,2000 --screenshot=" + Quote(png.string()),
        "png");
    EXPECT_EQ(shot.exit_code, 0) << shot.err;
    ExpectPng(png, 1280, 2000);
    EXPECT_THAT(ConsoleProblems(shot.err), IsEmpty());
  }

  // Prints `html` to <stem>.pdf next to it (the page has print styles): a non-trivial PDF.
  void CheckPrint(const fs::path& html) {
    fs::path pdf = html.parent_path() / (html.stem().string() + ".pdf");
    fs::remove(pdf);
    ChromiumRun print =
        RunChromium(html, "--no-pdf-header-footer --print-to-pdf=" + Quote(pdf.string()), "pdf");
    EXPECT_EQ(print.exit_code, 0) << print.err;
    std::string bytes = ReadFile(pdf);
    EXPECT_EQ(bytes.rfind("%PDF-", 0), 0u) << pdf << " is not a PDF";
    EXPECT_GT(bytes.size(), 20'000u) << pdf << " is (nearly) empty";
    EXPECT_THAT(ConsoleProblems(print.err), IsEmpty());
  }

  // Renders `result` to <name>.html in the output directory and checks it.
  fs::path CheckReport(const nlohmann::json& result, const std::string& name) {
    fs::path html = OutDir() / (name + ".html");
    WriteFile(html, RenderSimulationReport(result));
    CheckPage(html, result);
    return html;
  }
};

TEST_F(ReportChromiumTest, FixtureReportRendersWithoutScriptErrors) {
  nlohmann::json result = LoadFixture("result_full.json");
  ASSERT_TRUE(result.is_object());
  fs::path html = CheckReport(result, "fixture_full");
  CheckScreenshot(html);
  CheckPrint(html);
}

TEST_F(ReportChromiumTest, CapacityNullReportRendersWithoutScriptErrors) {
  nlohmann::json result = LoadFixture("result_capacity_null.json");
  ASSERT_TRUE(result.is_object());
  CheckReport(result, "fixture_capacity_null");
}

// The hover tooltips: synthetic mouse moves over the load chart and over a bar show the value
// under the pointer (the injected script only moves the mouse and reads the tooltip back).
TEST_F(ReportChromiumTest, HoverShowsValues) {
  std::string page = RenderSimulationReport(LoadFixture("result_full.json"));
  size_t end = page.rfind("</body>");
  ASSERT_NE(end, std::string::npos);
  page.insert(end, R"(<script>(function(){
function move(el,fx,fy){var r=el.getBoundingClientRect();el.dispatchEvent(new MouseEvent('mousemove',
{clientX:r.left+r.width*fx,clientY:r.top+r.height*fy,bubbles:true}));
return document.getElementById('tip').textContent;}
var b=document.body;
b.setAttribute('data-hover-load',move(document.getElementById('chart-aggregate'),0.5,0.5));
b.setAttribute('data-hover-tokens',move(document.getElementById('chart-tokens'),0.3,0.5));
b.setAttribute('data-hover-bar',move(document.querySelector('#chart-deny rect.bar'),0.5,0.5));
})();</script>)");
  fs::path html = OutDir() / "hover.html";
  WriteFile(html, page);
  ChromiumRun run = RunChromium(html, "--window-size=1280,2000 --dump-dom", "dom");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(DomProblems(run.out), IsEmpty());
  EXPECT_THAT(ConsoleProblems(run.err), IsEmpty());
  size_t b = run.out.find("<body");
  ASSERT_NE(b, std::string::npos);
  std::string body = run.out.substr(b, run.out.find('>', b) - b + 1);
  // About the middle of the 600 s run, in cost/s.
  EXPECT_THAT(Attr(body, "data-hover-load"),
              ::testing::MatchesRegex("t = 2[6-9][0-9] s: [0-9,]+ cost/s"));
  EXPECT_THAT(Attr(body, "data-hover-tokens"),
              ::testing::MatchesRegex("t = [0-9,.]+ s: [0-9,.]+ tokens.*"));
  EXPECT_EQ(Attr(body, "data-hover-bar"), "input on wifi: 0.4% (1,320 of 330,000 denied)");
}

// The real `tollgate simulate --report` on a short run of a built-in scenario: the page it writes
// passes the same checks against the result it prints with --json.
TEST_F(ReportChromiumTest, SimulatorReportRendersWithoutScriptErrors) {
  fs::path html = OutDir() / "simulate_attack_window.html";
  fs::path json_out = OutDir() / "simulate_attack_window.json";
  fs::path err = OutDir() / "simulate_attack_window.stderr";
  fs::remove(html);
  std::string cmd =
      "timeout -k 10 300 " + Quote(TOLLGATE_BIN) + " simulate " +
      Quote(std::string(TOLLGATE_EXAMPLES_DIR) + "/policies/failures/attack-window.yaml") +
      " --scenario attack-window --duration 90s --users 400 --json --report " +
      Quote(html.string()) + " >" + Quote(json_out.string()) + " 2>" + Quote(err.string()) +
      " </dev/null";
  int status = std::system(cmd.c_str());
  ASSERT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << "\n"
                                                                             << ReadFile(err);
  nlohmann::json result = nlohmann::json::parse(ReadFile(json_out), nullptr, false);
  ASSERT_TRUE(result.is_object()) << "tollgate simulate --json printed no JSON object";
  ASSERT_TRUE(fs::exists(html)) << "tollgate simulate --report wrote no " << html;
  // The simulator's result matches the report's schema: the page has no "missing field" notes.
  EXPECT_THAT(ReadFile(html), ::testing::Not(HasSubstr("id=\"report-notes\"")));
  CheckPage(html, result);
  CheckScreenshot(html);
}

// The detectors themselves: a runtime error, a syntax error and a failed load show up in the DOM
// hook, the script errors also in Chromium's console log.
TEST_F(ReportChromiumTest, InjectedScriptErrorsAreCaught) {
  std::string page = RenderSimulationReport(LoadFixture("result_capacity_null.json"));
  size_t end = page.rfind("</body>");
  ASSERT_NE(end, std::string::npos);
  page.insert(end,
              "<script>null.boom()</script><script>function (</script>"
              "<img src=\"http://127.0.0.1:9/missing.png\" alt=\"\">");
  fs::path html = OutDir() / "injected_errors.html";
  WriteFile(html, page);
  ChromiumRun run = RunChromium(html, "--dump-dom", "dom");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::string dom;
  for (const auto& p : DomProblems(run.out)) dom += p + "\n";
  EXPECT_THAT(dom, HasSubstr("<html data-script-errors=\"3\">"));
  EXPECT_THAT(dom, HasSubstr("<body data-script-errors=\"3\">: Uncaught TypeError"));
  EXPECT_THAT(dom, HasSubstr("SyntaxError"));
  std::string console;
  for (const auto& p : ConsoleProblems(run.err)) console += p + "\n";
  EXPECT_THAT(console, HasSubstr("Uncaught TypeError: Cannot read properties of null"))
      << "chromium's log:\n"
      << run.err;
  EXPECT_THAT(console, HasSubstr("Uncaught SyntaxError"));
  EXPECT_THAT(dom, HasSubstr("failed to load img http://127.0.0.1:9/missing.png"));
}

}  // namespace
}  // namespace tollgate::sim
