// The tollgate executable: argument parsing only; everything else lives in the libraries.
#include <string>

#include "CLI/CLI.hpp"
#include "tollgate/server.h"

int main(int argc, char** argv) {
  CLI::App app{"tollgate: fenced leases and rate limits behind the Redis protocol"};
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
                   "I/O threads (0 = one per core but one, at least 1)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  serve->add_option("--max-clients", opts.max_clients, "Maximum concurrent connections")
      ->check(CLI::Range(1, 1'000'000))
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
  std::string migrate_url;
  CLI::App* migrate = app.add_subcommand(
      "migrate", "Create or upgrade tollgate's tables and functions on a PostgreSQL backend");
  migrate->add_option("--backend", migrate_url, "postgres://... or a libpq key=value string")
      ->required();
  CLI11_PARSE(app, argc, argv);
  if (migrate->parsed()) return tollgate::RunMigrate(migrate_url);
  opts.lock_delay = std::chrono::milliseconds(lock_delay_ms);
  return tollgate::RunServer(opts);
}
