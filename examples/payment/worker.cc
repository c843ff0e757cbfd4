// The payment story, runnable: a worker that takes the lock on an order, prepares the charge, and
// charges the customer through a "bank". Run by run.sh twice at once, the first worker paused
// (SIGSTOP) past its lease's ttl while the second takes over.
//
// The bank is a ledger file (one line per charge) guarded by a fenced register on the tollgate
// server: a charge first writes FENCE.SET bank/<order> <fence> <worker>, and the ledger line is
// written only if the server accepted that fence. --mode picks how careful the worker is:
//   unfenced  charges straight into the ledger (what most lock users do);
//   fenced    charges through the fenced register: a stale fence is refused by the bank;
//   checked   also asks its Lease (lease.check()) right before charging: a worker whose lease ran
//             out while it was paused does not even try.
// Exit status: 0 charged, 3 refused by the bank (stale fence), 4 did not try (lease lost), 1 error.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "tollgate/client.h"

namespace {

// One line per charge; append and flush at once, so a kill right after leaves the line.
void AppendToLedger(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app);
  out << line << "\n";
  out.flush();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"payment worker: charge order-42 once, under a tollgate lease"};
  int port = 0;
  std::string name, mode = "checked", ledger;
  int64_t ttl_ms = 2000, prepare_ms = 1000, wait_ms = 10000;
  app.add_option("--port", port, "tollgate serve port on 127.0.0.1")->required();
  app.add_option("--name", name, "worker name written with the charge")->required();
  app.add_option("--mode", mode, "unfenced | fenced | checked")
      ->check(CLI::IsMember({"unfenced", "fenced", "checked"}));
  app.add_option("--ledger", ledger, "the bank's ledger file")->required();
  app.add_option("--ttl-ms", ttl_ms, "lease ttl")->check(CLI::Range(1, 86'400'000));
  app.add_option("--prepare-ms", prepare_ms, "time spent preparing the charge")
      ->check(CLI::Range(0, 600'000));
  app.add_option("--wait-ms", wait_ms, "how long to wait for the lock")
      ->check(CLI::Range(0, 86'400'000));
  CLI11_PARSE(app, argc, argv);

  absl::StatusOr<tollgate::Client> client = tollgate::Client::Connect({.port = port});
  if (!client.ok()) {
    std::cerr << name << ": " << client.status() << "\n";
    return 1;
  }
  tollgate::LeaseOptions options;
  options.ttl = std::chrono::milliseconds(ttl_ms);
  options.wait = std::chrono::milliseconds(wait_ms);
  options.owner = name;
  absl::StatusOr<std::optional<tollgate::Lease>> acquired = client->Acquire("order-42", options);
  if (!acquired.ok() || !acquired->has_value()) {
    std::cerr << name << ": could not lock order-42: "
              << (acquired.ok() ? "still taken" : acquired.status().ToString()) << "\n";
    return 1;
  }
  tollgate::Lease& lease = **acquired;
  std::cout << name << ": locked order-42 with fence " << lease.fence() << std::endl;

  std::this_thread::sleep_for(std::chrono::milliseconds(prepare_ms));  // (paused here by run.sh)
  std::cout << name << ": ready to charge the customer" << std::endl;

  if (mode == "checked") {
    if (absl::Status st = lease.check(); !st.ok()) {
      std::cout << name << ": not charging: " << st.message() << std::endl;
      return 4;
    }
  }
  const std::string charge = name + " (fence " + std::to_string(lease.fence()) + ")";
  if (mode != "unfenced") {
    absl::Status st = client->backend().FencedSet("bank/order-42", lease.fence(), name);
    if (st.code() == absl::StatusCode::kAborted) {
      std::cout << name << ": the bank refused the charge: " << st.message() << std::endl;
      return 3;
    }
    if (!st.ok()) {
      std::cerr << name << ": bank error: " << st << "\n";
      return 1;
    }
  }
  AppendToLedger(ledger, charge);
  std::cout << name << ": charged, " << charge << std::endl;
  (void)lease.release();
  return 0;
}
