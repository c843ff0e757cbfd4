// ValidateServerOptions: RunServer refuses options out of range before it opens or starts
// anything (issue 9, item 9: --io-threads above 64 used to overflow fixed per-thread arrays when
// RunServer was called from the library, where the CLI's range check does not run).
#include "gtest/gtest.h"
#include "tollgate/server.h"

namespace tollgate {
namespace {

TEST(ServerOptionsTest, DefaultsAreValid) { EXPECT_TRUE(ValidateServerOptions({}).ok()); }

TEST(ServerOptionsTest, IoThreadsAboveTheLimitAreRefused) {
  ServerOptions o;
  o.io_threads = kMaxIoThreads;
  EXPECT_TRUE(ValidateServerOptions(o).ok());
  o.io_threads = kMaxIoThreads + 1;
  absl::Status st = ValidateServerOptions(o);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "io_threads must be in [0, 64], got 65");
  o.io_threads = -1;
  EXPECT_EQ(ValidateServerOptions(o).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ServerOptionsTest, EveryNumericOptionIsRangeChecked) {
  ServerOptions o;
  o.port = 70000;
  EXPECT_EQ(ValidateServerOptions(o).message(), "port must be in [0, 65535], got 70000");
  o = {};
  o.max_clients = 0;
  EXPECT_EQ(ValidateServerOptions(o).message(), "max_clients must be in [1, 1000000], got 0");
  o = {};
  o.lock_delay = std::chrono::hours(25);
  EXPECT_EQ(ValidateServerOptions(o).message(),
            "lock_delay_ms must be in [0, 86400000], got 90000000");
  o = {};
  o.throttle_max_buckets = 0;
  EXPECT_EQ(ValidateServerOptions(o).message(),
            "throttle_max_buckets must be in [1, 1000000000], got 0");
}

// Lock-delay is honoured on Redis, and refused, never silently ignored, where it is not (issue 10).
TEST(ServerOptionsTest, LockDelayIsRefusedOnBackendsThatDoNotHonourIt) {
  ServerOptions o;
  o.lock_delay = std::chrono::milliseconds(100);
  o.backend_url = "redis://127.0.0.1:6379";
  EXPECT_TRUE(ValidateServerOptions(o).ok());
  for (const std::string kind : {"postgres", "etcd"}) {
    o.backend_url = kind + "://127.0.0.1:1";
    absl::Status st = ValidateServerOptions(o);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(st.message(), "--lock-delay-ms is not honoured on the " + kind +
                                " backend (--backend): run without --lock-delay-ms, or on the "
                                "embedded store or Redis");
  }
  o.backend_url.clear();
  EXPECT_TRUE(ValidateServerOptions(o).ok());
}

TEST(ServerOptionsTest, RunServerRefusesBadOptionsWithExitCode2) {
  ServerOptions o;
  o.io_threads = 1000;
  o.port = 0;
  EXPECT_EQ(RunServer(o), 2);
}

}  // namespace
}  // namespace tollgate
