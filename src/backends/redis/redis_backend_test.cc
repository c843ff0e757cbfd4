#include "tollgate/redis_backend.h"

#include <signal.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hiredis/hiredis.h"
#include "tests/support/redis_server.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::RedisServer;

Decimal D(const char* s) { return *Decimal::ParsePositive(s, "test", kMaxCapacity); }

TEST(RedisUrlTest, MalformedUrlsAreInvalidArgumentNamingTheUrl) {
  for (const char* url : {"", "redis:/x:1", "http://h:1", "redis://", "redis://:6379", "redis://h:",
                          "redis://h:0", "redis://h:65536", "redis://h:12x", "redis://u:p@h:1",
                          "redis://h:1/x", "redis://h:1/-1", "redis://[::1:1", "redis://h h:1"}) {
    auto b = NewRedisBackend(url);
    ASSERT_FALSE(b.ok()) << url;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_NE(b.status().message().find(std::string("'") + url + "'"), std::string::npos)
        << b.status();
  }
  EXPECT_EQ(NewRedisBackend("redis://127.0.0.1:1", Duration(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RedisUrlTest, NothingListeningIsUnavailablePromptly) {
  RedisServer s;  // reserve a port by starting and stopping a server
  ASSERT_TRUE(s.Start());
  s.Stop();
  const auto start = std::chrono::steady_clock::now();
  auto b = NewRedisBackend(s.url(), milliseconds(500));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable) << b.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
}

// A raw hiredis connection for poking at the server behind the backend's back.
class Raw {
 public:
  explicit Raw(int port) {
    timeval tv{2, 0};
    c_ = redisConnectWithTimeout("127.0.0.1", port, tv);
  }
  ~Raw() {
    if (c_ != nullptr) redisFree(c_);
  }
  // The reply as text (string, status, error or integer); "(nil)" for nil.
  std::string Cmd(std::vector<std::string> args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (r == nullptr) return "(io error)";
    std::string out;
    if (r->type == REDIS_REPLY_INTEGER) {
      out = std::to_string(r->integer);
    } else if (r->type == REDIS_REPLY_NIL) {
      out = "(nil)";
    } else if (r->str != nullptr) {
      out = std::string(r->str, r->len);
    }
    freeReplyObject(r);
    return out;
  }

 private:
  redisContext* c_ = nullptr;
};

class RedisBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    auto b = NewRedisBackend(server_.url(), seconds(1));
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = std::move(*b);
  }
  RedisServer server_;
  std::unique_ptr<Backend> b_;
};

TEST_F(RedisBackendTest, LeaseOnBinaryKeyAndKeyLayout) {
  const std::string key("k\0{x}\r\n", 7);
  auto g = b_->Acquire(key, seconds(30), "me");
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->fence, 1u);
  auto held = b_->Acquire(key, seconds(30), std::nullopt);
  ASSERT_TRUE(held.ok());
  EXPECT_FALSE(held->has_value());
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"HGET", "tollgate:{" + key + "}:lock", "owner"}), "me");
  EXPECT_EQ(raw.Cmd({"GET", "tollgate:{" + key + "}:fence"}), "1");
  auto info = b_->Info(key);
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->fence, 1u);
  EXPECT_EQ((*info)->owner, "me");
  EXPECT_EQ((*info)->waiters, 0u);
  ASSERT_TRUE(b_->Release(key, (*g)->lock_id).ok());
  // The fence counter never expires: the next grant continues from it.
  auto g2 = b_->Acquire(key, milliseconds(1), std::nullopt);
  ASSERT_TRUE(g2.ok() && g2->has_value());
  EXPECT_EQ((*g2)->fence, 2u);
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(b_->Extend(key, (*g2)->lock_id, seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);  // expired: never revived
  EXPECT_EQ(raw.Cmd({"PTTL", "tollgate:{" + key + "}:fence"}), "-1");
}

TEST_F(RedisBackendTest, RegisterComparesFullSixtyFourBitFences) {
  EXPECT_TRUE(b_->FencedSet("r", 18446744073709551615u, "max").ok());
  absl::Status st = b_->FencedSet("r", 18446744073709551614u, "one less");
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(st.message(), "fence 18446744073709551614 is older than 18446744073709551615");
  EXPECT_TRUE(b_->FencedSet("r2", 9007199254740993u, "a").ok());  // 2^53 + 1
  EXPECT_EQ(b_->FencedSet("r2", 9007199254740992u, "b").code(), absl::StatusCode::kAborted);
  auto got = b_->FencedGet("r2");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->fence, 9007199254740993u);
  EXPECT_EQ((*got)->value, "a");
}

TEST_F(RedisBackendTest, FencedWriteAcceptsEqualAndNewerRejectsOlder) {
  Raw raw(server_.port());
  const std::string key = "{order:42}:state";
  EXPECT_TRUE(RedisFencedWrite(*b_, key, 7, "a").ok());
  EXPECT_EQ(raw.Cmd({"GET", key}), "a");
  EXPECT_EQ(raw.Cmd({"GET", RedisFenceRecordKey(key)}), "7");
  EXPECT_EQ(RedisFenceRecordKey(key), "{order:42}:state:tollgate-fence");
  EXPECT_TRUE(RedisFencedWrite(*b_, key, 7, "b").ok());  // equal
  EXPECT_EQ(raw.Cmd({"GET", key}), "b");
  absl::Status stale = RedisFencedWrite(*b_, key, 6, "stale");
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(stale.message(), "fence 6 is older than 7");
  EXPECT_EQ(raw.Cmd({"GET", key}), "b");                                     // unchanged
  EXPECT_TRUE(RedisFencedWrite(*b_, key, 10, std::string("v\0x", 3)).ok());  // newer
  EXPECT_EQ(raw.Cmd({"GET", key}), std::string("v\0x", 3));
  EXPECT_EQ(raw.Cmd({"GET", RedisFenceRecordKey(key)}), "10");
  EXPECT_EQ(RedisFencedWrite(*b_, key, 0, "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisFencedWrite(*b_, "", 1, "x").code(), absl::StatusCode::kInvalidArgument);
  // The shipped script is usable directly (any client): EVAL with the documented KEYS/ARGV.
  EXPECT_EQ(raw.Cmd({"EVAL", std::string(RedisFencedWriteScript()), "2", key,
                     RedisFenceRecordKey(key), "9", "z"}),
            "STALE fence 9 is older than 10");
  EXPECT_EQ(raw.Cmd({"EVAL", std::string(RedisFencedWriteScript()), "2", key,
                     RedisFenceRecordKey(key), "11", "z"}),
            "OK");
  EXPECT_EQ(raw.Cmd({"EVAL", std::string(RedisFencedWriteScript()), "2", key,
                     RedisFenceRecordKey(key), "011", "z"})
                .substr(0, 4),
            "ERR ");
}

TEST_F(RedisBackendTest, ReloadsScriptsAfterScriptFlush) {
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"SCRIPT", "FLUSH"}), "OK");
  auto g = b_->Acquire("after-flush", seconds(5), std::nullopt);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->has_value());
  EXPECT_EQ(raw.Cmd({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(RedisFencedWrite(*b_, "user-key", 1, "v").ok());
  EXPECT_EQ(raw.Cmd({"SCRIPT", "FLUSH"}), "OK");
  auto d = b_->Throttle("t", {D("1"), D("1")}, D("1"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->allowed);
}

TEST_F(RedisBackendTest, UnavailablePromptlyWhenStoppedAndRecoversAfterRestart) {
  auto g = b_->Acquire("o", seconds(60), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value());
  server_.Stop();
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto down = b_->Info("o");
    EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
    EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
  }
  EXPECT_EQ(RedisFencedWrite(*b_, "k", 1, "v").code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(server_.Restart());
  absl::StatusOr<std::optional<LeaseInfo>> up = absl::UnavailableError("not tried");
  for (int i = 0; i < 50 && !up.ok(); ++i) {
    up = b_->Info("o");
    if (!up.ok()) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_TRUE(up->has_value());  // AOF kept the lease and the fence
  EXPECT_EQ((*up)->fence, (*g)->fence);
  EXPECT_TRUE(b_->Release("o", (*g)->lock_id).ok());
  auto next = b_->Acquire("o", seconds(5), std::nullopt);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_GT((*next)->fence, (*g)->fence);
}

TEST_F(RedisBackendTest, HungServerTimesOutAsUnavailable) {
  ASSERT_TRUE(b_->Info("x").ok());  // connected
  // A server that accepts nothing and answers nothing (stopped, not dead): the command timeout.
  ASSERT_EQ(kill(server_.pid(), SIGSTOP), 0);
  const auto start = std::chrono::steady_clock::now();
  auto r = b_->Info("x");
  const auto took = std::chrono::steady_clock::now() - start;
  kill(server_.pid(), SIGCONT);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_GE(took, milliseconds(900));
  EXPECT_LT(took, seconds(3));
  auto again = b_->Info("x");  // reconnects
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(RedisBackendTest, ThrottleIsExactAndBucketsExpireWhenFull) {
  const BucketParams p{D("1"), D("0.001")};  // one token per 1000 s
  auto a = b_->Throttle("slow", p, D("1"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->allowed);
  EXPECT_EQ(a->remaining, 0u);
  EXPECT_EQ(a->reset_after, seconds(1000));
  auto d = b_->Throttle("slow", p, D("0.001"));
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->allowed);
  ASSERT_TRUE(d->retry_after.has_value());
  // A thousandth of a token at 1 micro-token per ms: 1000 ms, less the whole milliseconds that
  // passed since the first call (a loaded machine may take a few).
  EXPECT_LE(*d->retry_after, milliseconds(1000));
  EXPECT_GT(*d->retry_after, milliseconds(900));
  Raw raw(server_.port());
  const long pttl = std::stol(raw.Cmd({"PTTL", "tollgate:t:{slow}"}));
  EXPECT_GT(pttl, 999'000);
  EXPECT_LE(pttl, 1'000'000);
  // Cost above capacity: never, whatever its size; nothing consumed.
  auto never = b_->Throttle("big", {D("2"), D("1")}, kMaxCost);
  ASSERT_TRUE(never.ok()) << never.status();
  EXPECT_FALSE(never->allowed);
  EXPECT_FALSE(never->retry_after.has_value());
  EXPECT_EQ(never->remaining, 2u);
  // Large capacity and a fractional cost stay exact.
  const BucketParams big{D("4000000000"), D("1000000")};
  auto x = b_->Throttle("large", big, D("0.000001"));
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_TRUE(x->allowed);
  EXPECT_EQ(x->remaining, 3'999'999'999u);
  EXPECT_EQ(x->reset_after, milliseconds(1));
}

TEST_F(RedisBackendTest, RejectsParametersTheLuaArithmeticCannotRepresent) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  auto r = b_->Throttle("p", {D("1"), D("0.0001")}, D("1"));
  EXPECT_EQ(r.status().code(), kInvalid);
  EXPECT_NE(r.status().message().find("rate"), std::string::npos) << r.status();
  r = b_->Throttle("p", {D("1.0000001"), D("1")}, D("1"));
  EXPECT_EQ(r.status().code(), kInvalid);
  EXPECT_NE(r.status().message().find("capacity"), std::string::npos) << r.status();
  r = b_->Throttle("p", {D("4000000001"), D("1")}, D("1"));
  EXPECT_EQ(r.status().code(), kInvalid);
  r = b_->Throttle("p", {D("1"), D("1")}, D("0.0000001"));
  EXPECT_EQ(r.status().code(), kInvalid);
  EXPECT_NE(r.status().message().find("cost"), std::string::npos) << r.status();
  std::vector<LayerCheck> layers = {{"ok", "k", {D("1"), D("1")}, false},
                                    {"bad", "k", {D("1"), D("0.0005")}, false}};
  auto c = b_->CheckLayers(layers, D("1"));
  EXPECT_EQ(c.status().code(), kInvalid);
  EXPECT_NE(c.status().message().find("layer 'bad'"), std::string::npos) << c.status();
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"DBSIZE"}), "0");  // nothing reached Redis
}

TEST_F(RedisBackendTest, CheckLayersChargesAllOrNothing) {
  const BucketParams global{D("3"), D("0.001")}, user{D("1"), D("0.001")};
  auto check = [&](const char* u) {
    std::vector<LayerCheck> layers = {{"global", "g", global, false},
                                      {"user", u, user, false},
                                      {"shadow", u, {D("0.5"), D("0.001")}, true}};
    auto d = b_->CheckLayers(layers, D("1"));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : PolicyDecision{};
  };
  auto a = check("a");
  EXPECT_TRUE(a.allowed);  // the shadow layer (capacity 0.5) denies but does not count
  EXPECT_EQ(a.remaining, 0u);
  for (int i = 0; i < 3; ++i) {
    auto d = check("a");
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.denied_layer, "user");
    ASSERT_TRUE(d.retry_after.has_value());
    EXPECT_GT(*d.retry_after, seconds(990));
  }
  Raw raw(server_.port());
  // Global was charged once; the shadow layer was never charged (it had no room).
  EXPECT_EQ(raw.Cmd({"HGET", "tollgate:l:{tollgate-rl}:6:global:g", "d"}), "1000000");
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:l:{tollgate-rl}:6:shadow:a"}), "0");
  EXPECT_TRUE(check("b").allowed);
  auto c = check("c");
  EXPECT_TRUE(c.allowed);
  EXPECT_EQ(c.remaining, 0u);
  auto d = check("d");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.denied_layer, "global");
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:l:{tollgate-rl}:4:user:d"}), "0");  // not charged
  // Layer names are length-prefixed: layer "a:b" key "c" and layer "a" key "b:c" never meet.
  std::vector<LayerCheck> l1 = {{"a:b", "c", user, false}};
  std::vector<LayerCheck> l2 = {{"a", "b:c", user, false}};
  EXPECT_TRUE(b_->CheckLayers(l1, D("1"))->allowed);
  EXPECT_TRUE(b_->CheckLayers(l2, D("1"))->allowed);
  // A cost above a layer's capacity: never.
  std::vector<LayerCheck> l3 = {{"global", "g2", global, false}};
  auto never = b_->CheckLayers(l3, D("4"));
  ASSERT_TRUE(never.ok());
  EXPECT_FALSE(never->allowed);
  EXPECT_FALSE(never->retry_after.has_value());
}

TEST_F(RedisBackendTest, SelectsTheDatabaseFromTheUrl) {
  auto b = NewRedisBackend(server_.url() + "/3");
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(RedisFencedWrite(**b, "in-db-3", 1, "v").ok());
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"EXISTS", "in-db-3"}), "0");
  EXPECT_EQ(raw.Cmd({"SELECT", "3"}), "OK");
  EXPECT_EQ(raw.Cmd({"GET", "in-db-3"}), "v");
  EXPECT_EQ(NewRedisBackend(server_.url() + "/99999").status().code(),
            absl::StatusCode::kInternal);  // the server refuses the db index
}

}  // namespace
}  // namespace tollgate
