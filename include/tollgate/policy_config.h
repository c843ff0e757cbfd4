// Policy configuration files (YAML) and hot reload. The format is documented in docs/policies.md.
#ifndef TOLLGATE_POLICY_CONFIG_H_
#define TOLLGATE_POLICY_CONFIG_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/clock.h"
#include "tollgate/decimal.h"
#include "tollgate/limiter.h"

namespace tollgate {

// Parses policy YAML text into specs, in file order. `source` names the file in error messages.
// A policy may carry an `expect:` section (see PolicyExpectations below): it is validated and
// dropped here.
// Every returned spec has passed ValidatePolicy, and policy names are unique.
// Errors are InvalidArgument with "FILE:LINE:COL: policies.chat.layers[2].rate: <what is wrong>"
// (line and column 1-based). Rejected: YAML syntax errors, more than one document, unknown or
// duplicate keys, wrong node types, missing required keys, numbers that are not exact positive
// decimals (NaN, .inf, negatives, zero, exponents), and anything ValidatePolicy rejects (prefixed
// with the file and the policy's line). Never throws.
[[nodiscard]] absl::StatusOr<std::vector<PolicySpec>> ParsePolicyYaml(std::string_view text,
                                                                      std::string_view source);

// ---- Deployment expectations and source positions (for `tollgate policy check` / `simulate`) ----

// What a policy's optional `expect:` section declares about the deployment it will run in. The
// server validates and otherwise ignores it; the linter and the simulator size the policy
// against it. Every field is optional; see docs/policy-check.md for the meaning of each.
struct MessageExpectation {
  std::string type;                  // a value of the type field (e.g. "text", "input")
  std::optional<Decimal> rate;       // typical messages per second per user
  std::optional<Decimal> tick_rate;  // fixed cadence the client sends at (messages per second)
};

struct PolicyExpectations {
  std::optional<uint64_t> users;  // concurrent users: distinct values of the field `user`
  std::optional<uint64_t> ips;    // distinct client addresses: values of the field `ip`
  // Distinct values of other request fields, by field name (also overrides user/ip).
  std::vector<std::pair<std::string, uint64_t>> fields;
  std::optional<Decimal> backend_ops_per_sec;  // what the protected backend sustains, cost units/s
  Duration jitter_window = std::chrono::seconds(1);    // jitter_window_ms: burst to absorb
  uint64_t attackers = 100;                            // identities one attacker controls
  Duration attack_horizon = std::chrono::seconds(10);  // attack_horizon_s: T in capacity + rate*T
  std::string type_field;  // field carrying the message type; empty = cost.by, else "type"
  std::optional<std::vector<std::string>> request_fields;  // fields clients supply
  std::vector<MessageExpectation> messages;
};

// 1-based line and column in the policy file; 0 when unknown.
struct SourcePos {
  int line = 0;
  int column = 0;
};

struct PolicyEntry {
  PolicySpec spec;
  std::optional<PolicyExpectations> expect;
  SourcePos pos;                     // the policy's name
  std::vector<SourcePos> layer_pos;  // each layer, parallel to spec.layers
  SourcePos cost_pos;                // the cost section (the policy's position if absent)
  // ValidatePolicy's verdict. Always OK from a validating parse; a lenient parse (validate =
  // false) returns policies that fail it with the error here, so a linter can report them all.
  absl::Status validation;
};

struct PolicyDocument {
  std::string source;
  std::vector<PolicyEntry> policies;  // file order
};

// As ParsePolicyYaml, but also returns each policy's expectations and source positions. With
// `validate` false, a policy that parses but fails ValidatePolicy is returned
// with the error in its `validation` instead of failing the whole parse; malformed YAML, unknown
// keys and bad values still fail. Never throws.
[[nodiscard]] absl::StatusOr<PolicyDocument> ParsePolicyDocument(std::string_view text,
                                                                 std::string_view source,
                                                                 bool validate = true);
// Reads `path` as LoadPolicyFile does and parses it with ParsePolicyDocument.
[[nodiscard]] absl::StatusOr<PolicyDocument> LoadPolicyDocument(const std::string& path,
                                                                bool validate = true);

// Reads `path` (a regular file of at most 16 MiB) and parses it with ParsePolicyYaml, using the
// path as `source`. NotFound if the file does not exist, PermissionDenied if it may not be read,
// FailedPrecondition if it is not a regular file or too large, Unavailable for other read errors;
// every message names the file. Never throws.
[[nodiscard]] absl::StatusOr<std::vector<PolicySpec>> LoadPolicyFile(const std::string& path);

// Watches a policy file and installs every good version of it.
//
// Reload() re-reads the file now (the server calls it on SIGHUP). After Start(), a background
// thread also reloads when the file changes: it watches the file's directory with inotify, so
// editors and deploy tools that replace the file by renaming another over it are handled, as are
// symlink swaps in that directory. Events are debounced (~100 ms of quiet), and a change
// notification whose file content equals the last content read is ignored.
//
// Every successful parse is passed to `install`. A read, parse or install error is logged
// (spdlog::error with the full message) and counted in reloads_failed(); the installer is not
// called for read or parse errors, so the previously installed policies stay.
//
// Thread-safe: loads are serialized, so installs happen in the order the file was read. The
// installer is called with an internal lock held and must not call back into the watcher.
class PolicyFileWatcher {
 public:
  // Returns OK if the policies were installed. Called from Start(), Reload() and the watch thread.
  using Installer = std::function<absl::Status(std::vector<PolicySpec>)>;

  // Does nothing until Start() or Reload(). `install` must be non-null.
  PolicyFileWatcher(std::string path, Installer install);
  // Stops and joins the watch thread (if started). Must not run concurrently with Start().
  ~PolicyFileWatcher();

  PolicyFileWatcher(const PolicyFileWatcher&) = delete;
  PolicyFileWatcher& operator=(const PolicyFileWatcher&) = delete;

  // Sets up the directory watch, loads and installs the file once, then starts the watch thread.
  // Returns the first error (watch setup, read, parse or install) and then starts nothing; the
  // initial load's error is returned as well as logged. FailedPrecondition if called twice
  // successfully. The initial load counts in reloads_ok() / reloads_failed().
  [[nodiscard]] absl::Status Start();

  // Reads, parses and installs the file now, whether or not it changed. Returns the read/parse or
  // install status (also logged on error). Works with or without Start().
  absl::Status Reload();

  // Loads (including Start's initial load) whose install succeeded / that failed at any step.
  uint64_t reloads_ok() const;
  uint64_t reloads_failed() const;
  // Whether the last counted load succeeded, and when it ended (Unix ms; 0 before the first).
  bool last_reload_ok() const;
  int64_t last_reload_unix_ms() const;
  const std::string& path() const { return path_; }

 private:
  // Like Reload(); if `only_if_changed`, skips (returning OK, counting nothing) when the file's
  // content equals the content last read.
  absl::Status LoadAndInstall(bool only_if_changed);
  void WatchLoop();

  const std::string path_;
  const Installer install_;

  std::mutex start_mu_;                   // serializes Start()
  std::mutex load_mu_;                    // serializes loads; guards the two fields below
  std::optional<std::string> last_text_;  // content of the last successful read
  bool last_read_failed_ = false;         // the last read failed
  std::atomic<uint64_t> ok_{0}, failed_{0};
  std::atomic<bool> last_ok_{false};
  std::atomic<int64_t> last_unix_ms_{0};

  int inotify_fd_ = -1;
  int stop_fd_ = -1;  // eventfd; written by the destructor to stop the thread
  std::string dir_, base_;
  std::thread thread_;
};

}  // namespace tollgate

#endif  // TOLLGATE_POLICY_CONFIG_H_
