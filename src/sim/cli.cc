// `tollgate simulate`: argument checking, loading, running and output. src/main.cc only declares
// the options.
#include <fstream>
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "tollgate/policy_config.h"
#include "tollgate/simulate.h"

#if defined(TOLLGATE_SIM_HAVE_REPORT) && __has_include("sim/report.h")
#include "sim/report.h"
#define TOLLGATE_SIM_REPORT 1
#endif

namespace tollgate::sim {

int RunSimulateCommand(const SimulateArgs& args, std::ostream& out, std::ostream& err) {
  RunOptions opt;
  opt.policy = args.policy;
  opt.seed = args.seed;
  opt.policy_file_label = args.policy_file;
  if (args.duration) {
    auto d = ParseSimDuration(*args.duration);
    if (!d.ok()) {
      err << "--duration: " << d.status().message() << "\n";
      return 2;
    }
    opt.duration = *d;
  }
  if (args.users) {
    if (*args.users < 0 || *args.users > 10'000'000) {
      err << "--users: must be an integer in [0, 10000000], got " << *args.users << "\n";
      return 2;
    }
    opt.users = static_cast<uint64_t>(*args.users);
  }
#ifndef TOLLGATE_SIM_REPORT
  if (!args.report.empty()) {
    err << "--report: this build of tollgate has no HTML report renderer (src/sim/report.cc)\n";
    return 2;
  }
#endif
  auto doc = LoadPolicyDocument(args.policy_file);
  if (!doc.ok()) {
    err << "POLICY_FILE: " << doc.status().message() << "\n";
    return 2;
  }
  auto scenario = LoadScenario(args.scenario);
  if (!scenario.ok()) {
    const std::string msg(scenario.status().message());
    err << (msg.starts_with("--scenario") ? "" : "--scenario: ") << msg << "\n";
    return 2;
  }
  auto result = RunSimulation(*scenario, *doc, opt);
  if (!result.ok()) {
    err << result.status().message() << "\n";
    return 2;
  }
  if (args.json) {
    out << result->dump(2) << "\n";
  } else {
    out << FormatSummary(*result);
  }
#ifdef TOLLGATE_SIM_REPORT
  if (!args.report.empty()) {
    std::string html;
    try {
      html = RenderSimulationReport(*result);
    } catch (const std::exception& e) {
      err << "--report: cannot render the report: " << e.what() << "\n";
      return 1;
    }
    std::ofstream f(args.report, std::ios::binary | std::ios::trunc);
    f << html;
    f.close();
    if (!f) {
      err << "--report: cannot write '" << args.report << "'\n";
      return 1;
    }
    if (!args.json) out << "\nReport written to " << args.report << "\n";
  }
#endif
  return 0;
}

}  // namespace tollgate::sim
