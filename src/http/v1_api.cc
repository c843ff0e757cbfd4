// The /v1 JSON API: the RESP commands' semantics and error messages over HTTP. Every argument goes
// through the same parsers and validators as the RESP handlers (server/args.h,
// server/acquire_options.h, ValidateKey, Decimal::ParsePositive, IsFieldName), so a bad value gives
// the same message on both.
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "http/api.h"
#include "server/acquire_options.h"
#include "server/args.h"
#include "server/replies.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"

namespace tollgate::http {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

// Deepest nesting of arrays and objects in `text` (a JSON document; strings are skipped).
int JsonDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

// The request body as a JSON object, or nullopt after replying 400.
std::optional<json> ParseBody(ApiContext& ctx, const httplib::Request& req,
                              httplib::Response& res) {
  if (JsonDepth(req.body) > ctx.limits.max_json_depth) {
    ReplyError(res, 400,
               "ERR request body nests deeper than " + std::to_string(ctx.limits.max_json_depth));
    return std::nullopt;
  }
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    ReplyError(res, 400, "ERR request body must be a JSON object");
    return std::nullopt;
  }
  return body;
}

// A JSON value as the argument text RESP would receive: a string as is, anything else as its JSON
// text (so 1.5 or true reach the integer parser and fail there with RESP's message).
std::string ArgText(const json& v) { return v.is_string() ? v.get<std::string>() : JsonText(v); }

// A required argument's text, or nullopt after replying 400.
std::optional<std::string> Required(const json& body, const char* name, httplib::Response& res) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    ReplyError(res, 400, std::string("ERR missing field '") + name + "'");
    return std::nullopt;
  }
  return ArgText(*it);
}

// A required string field (keys, lock ids, values), or nullopt after replying 400.
std::optional<std::string> RequiredString(const json& body, const char* name,
                                          httplib::Response& res) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_string()) {
    ReplyError(res, 400, std::string("ERR field '") + name + "' must be a string");
    return std::nullopt;
  }
  return it->get<std::string>();
}

bool CheckKey(std::string_view key, std::string_view what, httplib::Response& res) {
  absl::Status st = ValidateKey(key, what);
  if (!st.ok()) ReplyStatus(res, st);
  return st.ok();
}

std::optional<int64_t> IntArg(const json& body, const char* name, int64_t lo, int64_t hi,
                              httplib::Response& res) {
  std::optional<std::string> text = Required(body, name, res);
  if (!text) return std::nullopt;
  std::string err;
  std::optional<int64_t> v = server::ParseIntInRange(*text, name, lo, hi, &err);
  if (!v) ReplyError(res, 400, err);
  return v;
}

std::optional<Decimal> DecimalArg(const std::string& text, std::string_view what, Decimal max,
                                  httplib::Response& res) {
  absl::StatusOr<Decimal> d = Decimal::ParsePositive(text, what, max);
  if (!d.ok()) {
    ReplyStatus(res, d.status());
    return std::nullopt;
  }
  return *d;
}

// Whole seconds, rounded up (Retry-After and RateLimit-Reset are delta-seconds).
int64_t CeilSeconds(Duration d) { return (server::CeilMs(d) + 999) / 1000; }

// The integer part of a decimal (RateLimit-Limit is an integer).
std::string IntegerPart(const Decimal& d) {
  std::string s = d.ToString();
  return s.substr(0, s.find('.'));
}

json GrantJson(const LeaseGrant& g) {
  return {{"lock_id", g.lock_id}, {"fence", g.fence}, {"ttl_ms", server::CeilMs(g.ttl)}};
}

void LockAcquire(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::optional<json> body = ParseBody(ctx, req, res);
  if (!body) return;
  std::optional<std::string> key = RequiredString(*body, "key", res);
  if (!key || !CheckKey(*key, "key", res)) return;
  std::optional<int64_t> ttl = IntArg(*body, "ttl_ms", 1, server::kMaxMs, res);
  if (!ttl) return;
  // The RESP options, as RESP would get them, through RESP's parser.
  std::vector<std::string> opts;
  if (auto w = body->find("wait_ms"); w != body->end()) {
    opts.insert(opts.end(), {"WAIT", ArgText(*w)});
  }
  if (auto o = body->find("owner"); o != body->end()) {
    opts.insert(opts.end(), {"OWNER", ArgText(*o)});
  }
  std::string err;
  std::optional<server::AcquireOptions> parsed =
      server::ParseAcquireOptions(opts, "lock.acquire", &err);
  if (!parsed) return ReplyError(res, 400, err);
  AcquireRequest request{*key, milliseconds(*ttl), parsed->wait, std::move(parsed->owner)};

  using Result = std::optional<LeaseGrant>;
  auto slot = std::make_shared<ResultSlot<Result>>();
  auto ticket = std::make_shared<std::atomic<uint64_t>>(0);
  const size_t thread = ctx.PickThread();
  ctx.post(thread, [request = std::move(request), slot, ticket](server::State& s) mutable {
    server::State* state = &s;
    const std::string k = request.key;
    ticket->store(s.Acquire(
        request, [state, k, c = SlotCompletion<Result>(slot)](absl::StatusOr<Result> g) mutable {
          const std::optional<LeaseGrant> grant =
              g.ok() && g->has_value() ? *g : std::optional<LeaseGrant>();
          // The HTTP side gave up (timeout, stop): nobody will learn of this grant.
          if (!c(std::move(g)) && grant) state->Release(k, grant->lock_id, [](absl::Status) {});
        }));
  });
  auto r = slot->Wait(std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<milliseconds>(parsed->wait) +
                          ctx.limits.answer_slack,
                      &ctx.stopping);
  if (!r) {
    // Cancel the wait (posted after the Acquire, so the ticket is known when it runs); a grant that
    // still arrives is released by the completion.
    ctx.post(thread, [ticket](server::State& s) {
      if (uint64_t t = ticket->load(); t != 0) s.CancelWait(t);
    });
    return ReplyError(res, 503, "UNAVAILABLE no answer from the server in time");
  }
  if (!r->ok()) return ReplyStatus(res, r->status());
  if (!r->value().has_value()) return ReplyError(res, 409, "locked");
  if (absl::Status st = ctx.WaitDurable(); !st.ok()) return ReplyStatus(res, st);
  ReplyJson(res, 200, GrantJson(*r->value()));
}

void LockRelease(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::optional<json> body = ParseBody(ctx, req, res);
  if (!body) return;
  std::optional<std::string> key = RequiredString(*body, "key", res);
  if (!key || !CheckKey(*key, "key", res)) return;
  std::optional<std::string> lock_id = RequiredString(*body, "lock_id", res);
  if (!lock_id) return;
  absl::StatusOr<bool> r =
      ctx.Call<bool>([key = *key, lock_id = *lock_id](server::State& s, SlotCompletion<bool> c) {
        s.Release(key, lock_id, [c = std::move(c)](absl::Status st) mutable {
          if (st.ok()) {
            c(true);
          } else {
            c(st);
          }
        });
      });
  if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
    return ReplyError(res, 409, "not_held");
  }
  if (!r.ok()) return ReplyStatus(res, r.status());
  if (absl::Status st = ctx.WaitDurable(); !st.ok()) return ReplyStatus(res, st);
  ReplyJson(res, 200, {{"released", true}});
}

void LockExtend(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::optional<json> body = ParseBody(ctx, req, res);
  if (!body) return;
  std::optional<std::string> key = RequiredString(*body, "key", res);
  if (!key || !CheckKey(*key, "key", res)) return;
  std::optional<std::string> lock_id = RequiredString(*body, "lock_id", res);
  if (!lock_id) return;
  std::optional<int64_t> ttl = IntArg(*body, "ttl_ms", 1, server::kMaxMs, res);
  if (!ttl) return;
  absl::StatusOr<Duration> r =
      ctx.Call<Duration>([key = *key, lock_id = *lock_id, ttl = milliseconds(*ttl)](
                             server::State& s, SlotCompletion<Duration> c) {
        s.Extend(key, lock_id, ttl,
                 [c = std::move(c)](absl::StatusOr<Duration> d) mutable { c(std::move(d)); });
      });
  if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
    return ReplyError(res, 409, "not_held");
  }
  if (!r.ok()) return ReplyStatus(res, r.status());
  if (absl::Status st = ctx.WaitDurable(); !st.ok()) return ReplyStatus(res, st);
  ReplyJson(res, 200, {{"ttl_ms", server::CeilMs(*r)}});
}

// A required query parameter, or nullopt after replying 400.
std::optional<std::string> Query(const httplib::Request& req, const char* name,
                                 httplib::Response& res) {
  if (!req.has_param(name)) {
    ReplyError(res, 400, std::string("ERR missing query parameter '") + name + "'");
    return std::nullopt;
  }
  return req.get_param_value(name);
}

void LockInfo(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::optional<std::string> key = Query(req, "key", res);
  if (!key || !CheckKey(*key, "key", res)) return;
  using Result = std::optional<LeaseInfo>;
  absl::StatusOr<Result> r =
      ctx.Call<Result>([key = *key](server::State& s, SlotCompletion<Result> c) {
        s.Info(key, [c = std::move(c)](absl::StatusOr<Result> i) mutable { c(std::move(i)); });
      });
  if (!r.ok()) return ReplyStatus(res, r.status());
  if (!r->has_value()) return ReplyError(res, 404, "not_found");
  if (absl::Status st = ctx.WaitDurable(); !st.ok()) return ReplyStatus(res, st);
  const LeaseInfo& i = **r;
  ReplyJson(res, 200,
            {{"fence", i.fence},
             {"ttl_ms", server::CeilMs(i.ttl_remaining)},
             {"owner", i.owner ? json(*i.owner) : json(nullptr)},
             {"waiters", i.waiters}});
}

void FenceSet(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::optional<json> body = ParseBody(ctx, req, res);
  if (!body) return;
  std::optional<std::string> resource = RequiredString(*body, "resource", res);
  if (!resource || !CheckKey(*resource, "resource", res)) return;
  std::optional<int64_t> fence =
      IntArg(*body, "fence", 1, std::numeric_limits<int64_t>::max(), res);
  if (!fence) return;
  std::optional<std::string> value = RequiredString(*body, "value", res);
  if (!value) return;
  absl::StatusOr<bool> r =
      ctx.Call<bool>([resource = *resource, fence = static_cast<uint64_t>(*fence), value = *value](
                         server::State& s, SlotCompletion<bool> c) {
        s.FencedSet(resource, fence, value, [c = std::move(c)](absl::Status st) mutable {
          if (st.ok()) {
            c(true);
          } else {
            c(st);
          }
        });
      });
  if (!r.ok()) return ReplyStatus(res, r.status());  // STALE: 409
  if (absl::Status st = ctx.WaitDurable(); !st.ok()) return ReplyStatus(res, st);
  ReplyJson(res, 200, {{"ok", true}});
}

void FenceGet(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::optional<std::string> resource = Query(req, "resource", res);
  if (!resource || !CheckKey(*resource, "resource", res)) return;
  using Result = std::optional<FencedValue>;
  absl::StatusOr<Result> r =
      ctx.Call<Result>([resource = *resource](server::State& s, SlotCompletion<Result> c) {
        s.FencedGet(resource,
                    [c = std::move(c)](absl::StatusOr<Result> v) mutable { c(std::move(v)); });
      });
  if (!r.ok()) return ReplyStatus(res, r.status());
  if (!r->has_value()) return ReplyError(res, 404, "not_found");
  if (absl::Status st = ctx.WaitDurable(); !st.ok()) return ReplyStatus(res, st);
  ReplyJson(res, 200, {{"value", (*r)->value}, {"fence", (*r)->fence}});
}

void Throttle(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::optional<json> body = ParseBody(ctx, req, res);
  if (!body) return;
  std::optional<std::string> key = RequiredString(*body, "key", res);
  if (!key) return;
  std::optional<std::string> cap_text = Required(*body, "capacity", res);
  if (!cap_text) return;
  std::optional<Decimal> cap = DecimalArg(*cap_text, "capacity", kMaxCapacity, res);
  if (!cap) return;
  std::optional<std::string> rate_text = Required(*body, "rate_per_sec", res);
  if (!rate_text) return;
  std::optional<Decimal> rate = DecimalArg(*rate_text, "rate_per_sec", kMaxRate, res);
  if (!rate) return;
  Decimal cost = Decimal::Units(1);
  if (auto c = body->find("cost"); c != body->end()) {
    std::optional<Decimal> parsed = DecimalArg(ArgText(*c), "COST", kMaxCost, res);
    if (!parsed) return;
    cost = *parsed;
  }
  if (absl::Status st = ValidateRefillHorizon({*cap, *rate}); !st.ok()) {
    return ReplyStatus(res, st);
  }
  absl::StatusOr<Decision> d =
      ctx.Call<Decision>([key = *key, params = BucketParams{*cap, *rate}, cost](
                             server::State& s, SlotCompletion<Decision> c) {
        s.Throttle(key, params, cost,
                   [c = std::move(c)](absl::StatusOr<Decision> r) mutable { c(std::move(r)); });
      });
  if (!d.ok()) return ReplyStatus(res, d.status());
  // Counted with RESP's THROTTLE decisions (INFO ratelimit).
  (d->allowed ? ctx.services.stats.throttle_allowed : ctx.services.stats.throttle_denied)
      .fetch_add(1, std::memory_order_relaxed);
  const int64_t retry_ms = d->allowed ? 0 : (d->retry_after ? server::CeilMs(*d->retry_after) : -1);
  res.set_header("RateLimit-Limit", IntegerPart(*cap));
  res.set_header("RateLimit-Remaining", std::to_string(d->remaining));
  res.set_header("RateLimit-Reset", std::to_string(CeilSeconds(d->reset_after)));
  if (!d->allowed && d->retry_after) {
    res.set_header("Retry-After",
                   std::to_string(std::max<int64_t>(1, CeilSeconds(*d->retry_after))));
  }
  ReplyJson(res, d->allowed ? 200 : 429,
            {{"allowed", d->allowed},
             {"remaining", d->remaining},
             {"retry_after_ms", retry_ms},
             {"reset_after_ms", server::CeilMs(d->reset_after)}});
}

void RateCheck(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::optional<json> body = ParseBody(ctx, req, res);
  if (!body) return;
  std::optional<std::string> policy = RequiredString(*body, "policy", res);
  if (!policy) return;
  std::optional<Decimal> cost;
  if (auto c = body->find("cost"); c != body->end()) {
    cost = DecimalArg(ArgText(*c), "COST", kMaxCost, res);
    if (!cost) return;
  }
  std::vector<std::pair<std::string, std::string>> fields;
  if (auto f = body->find("fields"); f != body->end()) {
    if (!f->is_object()) return ReplyError(res, 400, "ERR field 'fields' must be a JSON object");
    if (f->size() > ctx.limits.max_fields) {
      return ReplyError(res, 400,
                        "ERR at most " + std::to_string(ctx.limits.max_fields) + " fields");
    }
    for (auto it = f->begin(); it != f->end(); ++it) {
      if (!IsFieldName(it.key())) {
        return ReplyError(res, 400,
                          "ERR field name '" + it.key().substr(0, 64) +
                              "' must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 64)");
      }
      fields.emplace_back(it.key(), ArgText(it.value()));
    }
  }
  absl::StatusOr<PolicyDecision> d =
      ctx.Call<PolicyDecision>([policy = *policy, fields = std::move(fields), cost](
                                   server::State& s, SlotCompletion<PolicyDecision> c) {
        std::vector<Field> views;
        views.reserve(fields.size());
        for (const auto& [name, value] : fields) views.emplace_back(name, value);
        s.RateCheck(
            policy, views, cost,
            [c = std::move(c)](absl::StatusOr<PolicyDecision> r) mutable { c(std::move(r)); });
      });
  if (!d.ok()) return ReplyStatus(res, d.status());
  const int64_t retry_ms = d->allowed ? 0 : (d->retry_after ? server::CeilMs(*d->retry_after) : -1);
  res.set_header("RateLimit-Remaining", std::to_string(d->remaining));
  if (!d->allowed) {
    const int64_t retry_s = d->retry_after ? std::max<int64_t>(1, CeilSeconds(*d->retry_after)) : 0;
    if (d->retry_after) res.set_header("Retry-After", std::to_string(retry_s));
    res.set_header("RateLimit-Reset", std::to_string(retry_s));
  }
  ReplyJson(res, d->allowed ? 200 : 429,
            {{"allowed", d->allowed},
             {"denied_layer", d->denied_layer ? json(*d->denied_layer) : json(nullptr)},
             {"remaining", d->remaining},
             {"retry_after_ms", retry_ms}});
}

}  // namespace

void RegisterV1Routes(httplib::Server& server, ApiContext& ctx) {
  using Fn = void (*)(ApiContext&, const httplib::Request&, httplib::Response&);
  auto bind = [&ctx](Fn fn) {
    return [&ctx, fn](const httplib::Request& req, httplib::Response& res) { fn(ctx, req, res); };
  };
  server.Post("/v1/lock/acquire", bind(&LockAcquire));
  server.Post("/v1/lock/release", bind(&LockRelease));
  server.Post("/v1/lock/extend", bind(&LockExtend));
  server.Get("/v1/lock/info", bind(&LockInfo));
  server.Post("/v1/fence/set", bind(&FenceSet));
  server.Get("/v1/fence/get", bind(&FenceGet));
  server.Post("/v1/throttle", bind(&Throttle));
  server.Post("/v1/rate/check", bind(&RateCheck));
}

}  // namespace tollgate::http
