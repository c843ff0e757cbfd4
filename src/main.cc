// The tollgate executable: argument parsing only; everything else lives in the libraries.
#include <chrono>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "client/lock_command.h"
#include "tollgate/policy_check.h"
#include "tollgate/server.h"
#include "tollgate/simulate.h"
#include "tollgate/version.h"  // generated from the CMake project version

int main(int argc, char** argv) {
  // Debian's abseil is built with mutex deadlock detection on (its debug-mode default): every
  // lock acquisition is recorded in a global lock graph, which costs about a third of a layered
  // rate-limit check. The tests keep it on to catch lock-order bugs; the binary turns it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{"tollgate: fenced leases and rate limits behind the Redis protocol"};
  app.set_version_flag("--version", std::string("tollgate ") + TOLLGATE_VERSION);
  app.require_subcommand(1);
  tollgate::ServerOptions opts;
  int64_t lock_delay_ms = 0;
  CLI::App* serve = app.add_subcommand("serve", "Run the server on the embedded durable store");
  serve->add_option("--port", opts.port, "TCP port (0 = any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  serve->add_option("--bind", opts.bind, "IPv4 address to listen on")->capture_default_str();
  serve->add_option("--data-dir", opts.data_dir, "Directory of the embedded store")
      ->capture_default_str();
  serve
      ->add_option("--requirepass", opts.requirepass,
                   "Password clients must give with AUTH or HELLO ... AUTH (or set "
                   "TOLLGATE_REQUIREPASS, which keeps it out of the process list)")
      ->envname("TOLLGATE_REQUIREPASS");
  serve
      ->add_option("--lock-delay-ms", lock_delay_ms,
                   "After a lease expires unreleased, keep its key ungranted this long")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400'000}))
      ->capture_default_str();
  serve
      ->add_option("--io-threads", opts.io_threads,
                   "I/O threads (0 = one per core but one, at least 1; with --backend 4 per core)")
      ->check(CLI::Range(0, tollgate::kMaxIoThreads))
      ->capture_default_str();
  serve->add_option("--max-clients", opts.max_clients, "Maximum concurrent connections")
      ->check(CLI::Range(1, tollgate::kMaxClients))
      ->capture_default_str();
  serve->add_option("--backend", opts.backend_url,
                    "Keep state on a shared backend instead of --data-dir: redis://host:port[/db] "
                    "or postgres://... (several servers may share one)");
  serve
      ->add_option("--config", opts.config_file,
                   "Policy YAML for RATE.CHECK; reloaded on SIGHUP and when it changes")
      ->check(CLI::ExistingFile);
  serve
      ->add_option("--throttle-max-buckets", opts.throttle_max_buckets,
                   "Live THROTTLE buckets before new keys are denied")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000'000}))
      ->capture_default_str();
  std::string http_port = std::to_string(tollgate::kDefaultHttpPort);
  serve
      ->add_option("--http-port", http_port,
                   "HTTP port for /metrics, /healthz, /readyz, the dashboard and the /v1 JSON API, "
                   "on --bind (0 = any free port, off = no HTTP)")
      ->check(CLI::IsMember({"off"}) | CLI::Range(0, 65535))
      ->capture_default_str();
  serve->add_flag("--metrics-auth", opts.metrics_auth,
                  "With --requirepass, /metrics and the dashboard need the Bearer token too");
  std::string migrate_url;
  CLI::App* migrate = app.add_subcommand(
      "migrate", "Create or upgrade tollgate's tables and functions on a PostgreSQL backend");
  migrate->add_option("--backend", migrate_url, "postgres://... or a libpq key=value string")
      ->required();
  // tollgate policy check FILE: the policy linter (exit 0 clean, 1 warnings, 2 errors).
  CLI::App* policy = app.add_subcommand("policy", "Work with rate-limit policy files");
  policy->require_subcommand(1);
  CLI::App* check = policy->add_subcommand(
      "check",
      "Lint a policy file: attack windows, aggregate floods, jitter headroom, impossible "
      "costs (exit 0 clean, 1 warnings, 2 errors)");
  std::string check_file, check_format = "text";
  int64_t max_recovery_s = 10, jitter_window_ms = 0;
  check->add_option("FILE", check_file, "Policy YAML, as given to serve --config")->required();
  check->add_option("--format", check_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  check
      ->add_option("--max-recovery-s", max_recovery_s,
                   "Capacity/rate above this many seconds is an attack window")
      ->check(CLI::Range(int64_t{1}, int64_t{86'400}))
      ->capture_default_str();
  check
      ->add_option("--jitter-window-ms", jitter_window_ms,
                   "Burst every per-identity layer must absorb (overrides expect.jitter_window_ms; "
                   "default 1000)")
      ->check(CLI::Range(int64_t{1}, int64_t{600'000}));
  // tollgate simulate POLICY_FILE --scenario S: the real limiter on a virtual clock.
  tollgate::sim::SimulateArgs sim;
  CLI::App* simulate = app.add_subcommand(
      "simulate", "Run a policy against simulated traffic on a virtual clock (docs/simulate.md)");
  simulate->add_option("POLICY_FILE", sim.policy_file, "Policy YAML")->required();
  simulate->add_option("--scenario", sim.scenario, "Scenario YAML file or built-in name")
      ->required();
  simulate->add_option("--policy", sim.policy, "Policy in the file (default: the scenario's)");
  simulate->add_option("--seed", sim.seed, "Random seed (default: the scenario's)");
  simulate->add_option("--duration", sim.duration, "Simulated time: 60s, 10m, 1h (at most 24h)");
  simulate->add_option("--users", sim.users, "Legitimate users, in [0, 10000000]");
  simulate->add_flag("--json", sim.json, "Print the result as JSON instead of a summary");
  simulate->add_option("--report", sim.report, "Also write an HTML report to this file");
  // tollgate lock KEY --ttl D ... -- COMMAND [ARGS...]: src/client/lock_command.h.
  tollgate::LockCommandArgs lock_args;
  CLI::App* lock = app.add_subcommand(
      "lock",
      "Run COMMAND while holding the lease on KEY; exits with COMMAND's status, 75 if not "
      "acquired within --wait, 76 if the lease was lost (COMMAND is then killed), 69 if the "
      "server is unreachable, 2 for bad arguments. Password from TOLLGATE_PASSWORD");
  lock->add_option("KEY", lock_args.key, "The lease's key")->required();
  lock->add_option("--ttl", lock_args.ttl, "Lease time to live: 500ms, 30s, 5m")->required();
  lock->add_option("--wait", lock_args.wait, "How long to wait for the key")->capture_default_str();
  CLI::Option* server_opt = lock->add_option(
      "--server", lock_args.server,
      "HOST:PORT of tollgate serve (default 127.0.0.1:" + std::to_string(tollgate::kDefaultPort) +
          ")");
  lock->add_option("--backend", lock_args.backend_url,
                   "Hold the lease directly on a backend instead: redis://, postgres://, etcd://")
      ->excludes(server_opt);
  lock->add_option("--owner", lock_args.owner, "Label shown by LOCK.INFO");
  lock->add_option("--max-hold", lock_args.max_hold,
                   "Stop renewing after this long (COMMAND is then stopped at safe_until)");
  lock->add_option("--kill-after", lock_args.kill_after,
                   "SIGKILL this long after the SIGTERM (default: at safe_until)");
  lock->add_option("COMMAND", lock_args.command, "The command and its arguments, after --")
      ->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and exits 0; any bad argument is a usage error: exit 2, like policy check's
    // own errors, so scripts can tell it from "warnings found" (1).
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (lock->parsed()) return tollgate::RunLockCommand(lock_args, std::cerr);
  if (migrate->parsed()) return tollgate::RunMigrate(migrate_url);
  if (simulate->parsed()) return tollgate::sim::RunSimulateCommand(sim, std::cout, std::cerr);
  if (check->parsed()) {
    tollgate::CheckOptions o;
    o.max_recovery = std::chrono::seconds(max_recovery_s);
    if (jitter_window_ms > 0) o.jitter_window = std::chrono::milliseconds(jitter_window_ms);
    return tollgate::RunPolicyCheck(
        check_file,
        check_format == "json" ? tollgate::CheckFormat::kJson : tollgate::CheckFormat::kText, o,
        std::cout, std::cerr);
  }
  opts.lock_delay = std::chrono::milliseconds(lock_delay_ms);
  opts.http_port = http_port == "off" ? tollgate::kHttpOff : std::stoi(http_port);
  return tollgate::RunServer(opts);
}
