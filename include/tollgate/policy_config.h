// Policy configuration files (YAML) and hot reload. The format is documented in docs/policies.md.
#ifndef TOLLGATE_POLICY_CONFIG_H_
#define TOLLGATE_POLICY_CONFIG_H_

#include <atomic>
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
#include "tollgate/limiter.h"

namespace tollgate {

// Parses policy YAML text into specs, in file order. `source` names the file in error messages.
// Every returned spec has passed ValidatePolicy, and policy names are unique.
// Errors are InvalidArgument with "FILE:LINE:COL: policies.chat.layers[2].rate: <what is wrong>"
// (line and column 1-based). Rejected: YAML syntax errors, more than one document, unknown or
// duplicate keys, wrong node types, missing required keys, numbers that are not exact positive
// decimals (NaN, .inf, negatives, zero, exponents), and anything ValidatePolicy rejects (prefixed
// with the file and the policy's line). Never throws.
[[nodiscard]] absl::StatusOr<std::vector<PolicySpec>> ParsePolicyYaml(std::string_view text,
                                                                      std::string_view source);

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

  int inotify_fd_ = -1;
  int stop_fd_ = -1;  // eventfd; written by the destructor to stop the thread
  std::string dir_, base_;
  std::thread thread_;
};

}  // namespace tollgate

#endif  // TOLLGATE_POLICY_CONFIG_H_
