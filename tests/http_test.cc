// The HTTP side channel end to end (src/http): a real `tollgate serve --http-port 0`, on the
// embedded store and on Redis. Every route's success and error cases, the same error text as RESP,
// RateLimit-* and Retry-After headers, Bearer auth, and the abuse limits (body size, slow client,
// JSON depth).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
#include "tests/support/redis_server.h"
#endif

namespace tollgate::testing {
namespace {

using nlohmann::json;

std::string Err(const Reply& r) {
  return r && r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "<not an error>";
}

json Body(const httplib::Result& r) { return r ? json::parse(r->body, nullptr, false) : json(); }

class HttpTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::vector<std::string> args = {"--config", TOLLGATE_CHAT_YAML};
    if (GetParam() == "redis") {
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
      redis_ = std::make_unique<RedisServer>();
      ASSERT_TRUE(redis_->Start());
      args.insert(args.end(), {"--backend", redis_->url()});
#else
      GTEST_SKIP() << "built without the Redis backend";
#endif
    }
    server_ = std::make_unique<ServerProcess>(dir_.path(), args);
    ASSERT_TRUE(server_->ok());
    ASSERT_GT(server_->http_port(), 0);
    http_ = std::make_unique<httplib::Client>("127.0.0.1", server_->http_port());
    http_->set_read_timeout(std::chrono::seconds(10));
  }

  httplib::Result Post(const std::string& path, const json& body) {
    return http_->Post(path.c_str(), body.dump(), "application/json");
  }

  TempDir dir_;
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
  std::unique_ptr<RedisServer> redis_;
#endif
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<httplib::Client> http_;
};

TEST_P(HttpTest, HealthReadyMetricsDashboard) {
  auto h = http_->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->body, "ok");
  auto r = http_->Get("/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto m = http_->Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_EQ(m->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(m->body.find("# TYPE "), std::string::npos);
  auto d = http_->Get("/");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 200);
  EXPECT_EQ(d->get_header_value("Content-Type").rfind("text/html", 0), 0u);
  auto n = http_->Get("/nope");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->status, 404);
}

TEST_P(HttpTest, LockLifecycle) {
  auto a = Post("/v1/lock/acquire", {{"key", "k"}, {"ttl_ms", 5000}, {"owner", "me"}});
  ASSERT_TRUE(a);
  ASSERT_EQ(a->status, 200) << a->body;
  json grant = Body(a);
  const std::string lock_id = grant["lock_id"];
  EXPECT_GE(grant["fence"].get<int64_t>(), 1);
  EXPECT_EQ(grant["ttl_ms"], 5000);

  auto again = Post("/v1/lock/acquire", {{"key", "k"}, {"ttl_ms", 5000}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 409);
  EXPECT_EQ(Body(again)["error"], "locked");

  auto info = http_->Get("/v1/lock/info?key=k");
  ASSERT_TRUE(info);
  ASSERT_EQ(info->status, 200);
  EXPECT_EQ(Body(info)["owner"], "me");
  EXPECT_EQ(Body(info)["fence"], grant["fence"]);
  EXPECT_EQ(Body(info)["waiters"], 0);

  auto ext = Post("/v1/lock/extend", {{"key", "k"}, {"lock_id", lock_id}, {"ttl_ms", 9000}});
  ASSERT_TRUE(ext);
  EXPECT_EQ(ext->status, 200);
  EXPECT_EQ(Body(ext)["ttl_ms"], 9000);
  auto bad_ext = Post("/v1/lock/extend", {{"key", "k"}, {"lock_id", "nope"}, {"ttl_ms", 9000}});
  ASSERT_TRUE(bad_ext);
  EXPECT_EQ(bad_ext->status, 409);

  // The fence the lock gave guards a register; an older fence is STALE (409).
  auto set = Post("/v1/fence/set", {{"resource", "r"}, {"fence", grant["fence"]}, {"value", "v1"}});
  ASSERT_TRUE(set);
  EXPECT_EQ(set->status, 200) << set->body;
  auto got = http_->Get("/v1/fence/get?resource=r");
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, 200);
  EXPECT_EQ(Body(got)["value"], "v1");
  EXPECT_EQ(Body(got)["fence"], grant["fence"]);

  auto rel = Post("/v1/lock/release", {{"key", "k"}, {"lock_id", lock_id}});
  ASSERT_TRUE(rel);
  EXPECT_EQ(rel->status, 200);
  EXPECT_EQ(Body(rel)["released"], true);
  auto rel2 = Post("/v1/lock/release", {{"key", "k"}, {"lock_id", lock_id}});
  ASSERT_TRUE(rel2);
  EXPECT_EQ(rel2->status, 409);
  EXPECT_EQ(Body(rel2)["error"], "not_held");

  auto a2 = Post("/v1/lock/acquire", {{"key", "k"}, {"ttl_ms", 5000}});
  ASSERT_TRUE(a2);
  ASSERT_EQ(a2->status, 200);
  auto newer =
      Post("/v1/fence/set", {{"resource", "r"}, {"fence", Body(a2)["fence"]}, {"value", "v2"}});
  ASSERT_TRUE(newer);
  EXPECT_EQ(newer->status, 200);
  auto stale =
      Post("/v1/fence/set", {{"resource", "r"}, {"fence", grant["fence"]}, {"value", "x"}});
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->status, 409);
  EXPECT_EQ(Body(stale)["error"].get<std::string>().rfind("STALE", 0), 0u) << stale->body;

  auto none = http_->Get("/v1/lock/info?key=absent");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 404);
  auto none2 = http_->Get("/v1/fence/get?resource=absent");
  ASSERT_TRUE(none2);
  EXPECT_EQ(none2->status, 404);
}

TEST_P(HttpTest, WaitIsGrantedOnReleaseAndBoundedOtherwise) {
  auto a = Post("/v1/lock/acquire", {{"key", "w"}, {"ttl_ms", 10000}});
  ASSERT_TRUE(a);
  ASSERT_EQ(a->status, 200);
  const std::string lock_id = Body(a)["lock_id"];
  // Times out: 409 after about wait_ms.
  const auto t0 = std::chrono::steady_clock::now();
  auto timed_out = Post("/v1/lock/acquire", {{"key", "w"}, {"ttl_ms", 1000}, {"wait_ms", 300}});
  ASSERT_TRUE(timed_out);
  EXPECT_EQ(timed_out->status, 409);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250));
  // Granted when the holder releases, from another connection.
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    httplib::Client c("127.0.0.1", server_->http_port());
    c.Post("/v1/lock/release", json{{"key", "w"}, {"lock_id", lock_id}}.dump(), "application/json");
  });
  auto waited = Post("/v1/lock/acquire", {{"key", "w"}, {"ttl_ms", 1000}, {"wait_ms", 5000}});
  releaser.join();
  ASSERT_TRUE(waited);
  EXPECT_EQ(waited->status, 200) << waited->body;
}

TEST_P(HttpTest, BadInputGivesRespMessage) {
  Client resp(server_->port());
  ASSERT_TRUE(resp.ok());
  struct Case {
    std::string path;
    json body;
    std::vector<std::string> command;
  };
  const std::vector<Case> cases = {
      {"/v1/lock/acquire", {{"key", "k"}, {"ttl_ms", 0}}, {"LOCK.ACQUIRE", "k", "0"}},
      {"/v1/lock/acquire", {{"key", "k"}, {"ttl_ms", "abc"}}, {"LOCK.ACQUIRE", "k", "abc"}},
      {"/v1/lock/acquire",
       {{"key", "k"}, {"ttl_ms", 100}, {"wait_ms", -1}},
       {"LOCK.ACQUIRE", "k", "100", "WAIT", "-1"}},
      {"/v1/lock/acquire",
       {{"key", "k"}, {"ttl_ms", 100}, {"owner", ""}},
       {"LOCK.ACQUIRE", "k", "100", "OWNER", ""}},
      {"/v1/lock/acquire", {{"key", ""}, {"ttl_ms", 100}}, {"LOCK.ACQUIRE", "", "100"}},
      {"/v1/lock/extend",
       {{"key", "k"}, {"lock_id", "x"}, {"ttl_ms", 1.5}},
       {"LOCK.EXTEND", "k", "x", "1.5"}},
      {"/v1/fence/set",
       {{"resource", "r"}, {"fence", 0}, {"value", "v"}},
       {"FENCE.SET", "r", "0", "v"}},
      {"/v1/throttle",
       {{"key", "t"}, {"capacity", -1}, {"rate_per_sec", 1}},
       {"THROTTLE", "t", "-1", "1"}},
      {"/v1/throttle",
       {{"key", "t"}, {"capacity", 10}, {"rate_per_sec", 1}, {"cost", "nan"}},
       {"THROTTLE", "t", "10", "1", "COST", "nan"}},
      {"/v1/rate/check", {{"policy", "nope"}}, {"RATE.CHECK", "nope"}},
      {"/v1/rate/check",
       {{"policy", "chat"}, {"fields", {{"Bad", "x"}}}},
       {"RATE.CHECK", "chat", "Bad", "x"}},
  };
  for (const Case& c : cases) {
    auto r = Post(c.path, c.body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.path << " " << c.body.dump() << " " << r->body;
    EXPECT_EQ(Body(r)["error"], Err(resp.Run(c.command))) << c.path << " " << c.body.dump();
  }
  for (const char* body : {"not json", "[1,2]", "{\"key\":"}) {
    auto r = http_->Post("/v1/lock/acquire", body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body;
  }
  auto missing = Post("/v1/lock/acquire", {{"key", "k"}});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 400);
  auto no_param = http_->Get("/v1/lock/info");
  ASSERT_TRUE(no_param);
  EXPECT_EQ(no_param->status, 400);
}

TEST_P(HttpTest, ThrottleHeaders) {
  const json body = {{"key", "tk"}, {"capacity", 2}, {"rate_per_sec", 0.5}};
  for (int i = 0; i < 2; ++i) {
    auto ok = Post("/v1/throttle", body);
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200);
    EXPECT_EQ(ok->get_header_value("RateLimit-Limit"), "2");
    EXPECT_EQ(ok->get_header_value("RateLimit-Remaining"), std::to_string(1 - i));
    EXPECT_EQ(Body(ok)["allowed"], true);
  }
  auto denied = Post("/v1/throttle", body);
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 429);
  EXPECT_EQ(denied->get_header_value("Retry-After"), "2");
  EXPECT_EQ(denied->get_header_value("RateLimit-Remaining"), "0");
  EXPECT_EQ(denied->get_header_value("RateLimit-Reset"), "4");
  EXPECT_EQ(Body(denied)["allowed"], false);
  EXPECT_GT(Body(denied)["retry_after_ms"].get<int64_t>(), 1000);
}

TEST_P(HttpTest, RateCheckNamesTheDenyingLayer) {
  const json body = {{"policy", "chat"},
                     {"fields", {{"ip", "10.0.0.1"}, {"user", "ann"}, {"type", "code_paste"}}}};
  for (int i = 0; i < 6; ++i) {
    auto ok = Post("/v1/rate/check", body);
    ASSERT_TRUE(ok);
    ASSERT_EQ(ok->status, 200) << i << " " << ok->body;
    EXPECT_EQ(Body(ok)["allowed"], true);
  }
  auto denied = Post("/v1/rate/check", body);
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 429);
  EXPECT_EQ(Body(denied)["denied_layer"], "user_type");
  EXPECT_FALSE(denied->get_header_value("Retry-After").empty());
  EXPECT_FALSE(denied->get_header_value("RateLimit-Remaining").empty());
  auto cheap =
      Post("/v1/rate/check", {{"policy", "chat"},
                              {"cost", 0.5},
                              {"fields", {{"ip", "10.0.0.2"}, {"user", "bob"}, {"type", "text"}}}});
  ASSERT_TRUE(cheap);
  EXPECT_EQ(cheap->status, 200) << cheap->body;
}

TEST_P(HttpTest, Limits) {
  // Body over 64 KiB: 413.
  auto big = http_->Post("/v1/lock/acquire", std::string(70 * 1024, ' '), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  // Nesting deeper than the limit: 400.
  auto deep = http_->Post("/v1/lock/acquire",
                          "{\"key\":" + std::string(20, '[') + std::string(20, ']') + "}",
                          "application/json");
  ASSERT_TRUE(deep);
  EXPECT_EQ(deep->status, 400);
  // A slow client (half a request line, then nothing) is dropped after the read timeout, and the
  // server keeps answering others meanwhile.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->http_port()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(write(fd, "GET /heal", 9), 9);
  auto h = http_->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const auto t0 = std::chrono::steady_clock::now();
  char buf[256];
  ssize_t n = 0;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
  }
  EXPECT_EQ(n, 0);  // closed by the server, not our 10 s timeout
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(8));
  close(fd);
}

INSTANTIATE_TEST_SUITE_P(Stores, HttpTest, ::testing::Values("embedded", "redis"));

TEST(HttpAuthTest, BearerTokenGuardsV1) {
  TempDir dir;
  ServerProcess server(dir.path(), {"--requirepass", "s3cret"});
  ASSERT_TRUE(server.ok());
  httplib::Client c("127.0.0.1", server.http_port());
  const std::string body = json{{"key", "a"}, {"ttl_ms", 1000}}.dump();
  auto none = c.Post("/v1/lock/acquire", body, "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->get_header_value("WWW-Authenticate").rfind("Bearer", 0), 0u);
  auto wrong = c.Post("/v1/lock/acquire", httplib::Headers{{"Authorization", "Bearer nope"}}, body,
                      "application/json");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto right = c.Post("/v1/lock/acquire", httplib::Headers{{"Authorization", "Bearer s3cret"}},
                      body, "application/json");
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 200);
  for (const char* open : {"/metrics", "/healthz", "/readyz", "/"}) {
    auto r = c.Get(open);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << open;
  }
}

TEST(HttpAuthTest, MetricsAuthGuardsMetricsAndDashboard) {
  TempDir dir;
  ServerProcess server(dir.path(), {"--requirepass", "s3cret", "--metrics-auth"});
  ASSERT_TRUE(server.ok());
  httplib::Client c("127.0.0.1", server.http_port());
  for (const char* guarded : {"/metrics", "/"}) {
    auto r = c.Get(guarded);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << guarded;
    auto ok = c.Get(guarded, httplib::Headers{{"Authorization", "Bearer s3cret"}});
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200) << guarded;
  }
  for (const char* open : {"/healthz", "/readyz"}) {
    auto r = c.Get(open);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << open;
  }
}

TEST(HttpOffTest, OffMeansNoHttpLine) {
  TempDir dir;
  ServerProcess server(dir.path(), {"--http-port", "off"});
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(server.http_port(), 0);
}

}  // namespace
}  // namespace tollgate::testing
