#include "http/http_server.h"

#include <exception>
#include <string>
#include <utility>

#include "core/lock_id.h"
#include "dashboard/dashboard.h"
#include "http/api.h"
#include "http/bounded_task_queue.h"
#include "metrics/metrics.h"
#include "server/args.h"
#include "server/replies.h"
#include "spdlog/spdlog.h"
#include "tollgate/lease_manager.h"

namespace tollgate::http {

std::string JsonText(const nlohmann::json& body) {
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void ReplyJson(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(JsonText(body), "application/json");
}

void ReplyError(httplib::Response& res, int status, const std::string& message) {
  ReplyJson(res, status, {{"error", message}});
}

void ReplyStatus(httplib::Response& res, const absl::Status& st) {
  int status = 500;
  switch (st.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
      status = 400;
      break;
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:
      status = 409;
      break;
    case absl::StatusCode::kResourceExhausted:
      status = 429;
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      status = 503;
      break;
    default:
      break;
  }
  ReplyError(res, status, server::RespErrorText(st));
}

absl::Status ApiContext::WaitDurable() {
  DurableStore* store = services.store;
  if (store == nullptr) return absl::OkStatus();
  return store->WaitDurable(store->LastAppended());
}

class HttpServer::Impl {
 public:
  Impl(server::Services& services, size_t io_threads, PostToState post, const HttpLimits& limits)
      : ctx{services, io_threads, std::move(post), limits} {}

  ApiContext ctx;
  httplib::Server server;
  std::thread listener;
  bool stopped = false;
};

namespace {

// Whether the request carries `Authorization: Bearer <secret>`, compared in constant time as RESP's
// AUTH does.
bool BearerOk(const httplib::Request& req, const std::string& secret) {
  const std::string h = req.get_header_value("Authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (h.size() < kPrefix.size() || !server::EqualsIgnoreCase(h.substr(0, 6), "Bearer") ||
      h[6] != ' ') {
    return false;
  }
  return core::ConstantTimeEqualsSecret(std::string_view(h).substr(kPrefix.size()), secret);
}

bool NeedsAuth(const ServerOptions& o, const std::string& path) {
  if (o.requirepass.empty()) return false;
  if (path.rfind("/v1/", 0) == 0) return true;
  return o.metrics_auth && (path == "/metrics" || path == "/");
}

void Routes(HttpServer::Impl& impl) {
  ApiContext& ctx = impl.ctx;
  httplib::Server& s = impl.server;
  const ServerOptions& options = ctx.services.options;
  s.set_pre_routing_handler([&ctx, &options](const httplib::Request& req, httplib::Response& res) {
    if (ShedThisRequest()) {
      res.set_header("Connection", "close");
      res.set_header("Retry-After", "1");
      ReplyError(res, 503, "too many HTTP connections");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (NeedsAuth(options, req.path) && !BearerOk(req, options.requirepass)) {
      const bool given = req.has_header("Authorization");
      if (given) ctx.services.stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
      res.set_header("WWW-Authenticate", "Bearer realm=\"tollgate\"");
      ReplyError(res, 401,
                 given ? "WRONGPASS invalid password" : "NOAUTH Authentication required.");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain; charset=utf-8");
  });
  s.Get("/readyz", [&ctx](const httplib::Request&, httplib::Response& res) {
    if (ctx.stopping.load()) return ReplyError(res, 503, "shutting down");
    // A read through an I/O thread's State: the embedded store's lease manager, or a round trip
    // to the shared backend.
    using Result = std::optional<LeaseInfo>;
    absl::StatusOr<Result> r = ctx.Call<Result>([](server::State& st, SlotCompletion<Result> c) {
      st.Info("tollgate:readyz",
              [c = std::move(c)](absl::StatusOr<Result> i) mutable { c(std::move(i)); });
    });
    if (!r.ok()) {
      return ReplyError(res, 503,
                        std::string(ctx.services.store ? "store" : "backend") +
                            " not ready: " + std::string(r.status().message()));
    }
    res.set_content("ready", "text/plain; charset=utf-8");
  });
  s.Get("/metrics", [&ctx](const httplib::Request&, httplib::Response& res) {
    if (ctx.services.metrics == nullptr) return ReplyError(res, 503, "metrics not set up");
    res.set_content(ctx.services.metrics->RenderText(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    const std::string_view page = dashboard::DashboardHtml();
    res.set_content(page.data(), page.size(), "text/html; charset=utf-8");
  });
  RegisterV1Routes(s, ctx);
  // Unknown routes, 413 (body over the limit) and other library errors: a JSON body.
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    switch (res.status) {
      case 404:
        return ReplyError(res, 404, "not_found");
      case 413:
        return ReplyError(res, 413, "request body too large");
      default:
        return ReplyError(res, res.status, "http error " + std::to_string(res.status));
    }
  });
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("http: {}", what);
        ReplyError(res, 500, "ERR internal error");
      });
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpConfig& config,
                                                              server::Services& services,
                                                              size_t io_threads, PostToState post) {
  auto impl = std::make_unique<Impl>(services, std::max<size_t>(1, io_threads), std::move(post),
                                     config.limits);
  const HttpLimits& l = config.limits;
  httplib::Server& s = impl->server;
  s.new_task_queue = [l] { return new BoundedTaskQueue(l.workers, l.max_queued); };
  s.set_payload_max_length(l.max_body_bytes);
  s.set_read_timeout(l.read_timeout);
  s.set_write_timeout(l.write_timeout);
  s.set_keep_alive_timeout(l.keep_alive_timeout.count());
  s.set_keep_alive_max_count(l.keep_alive_max_requests);
  s.set_tcp_nodelay(true);
  Routes(*impl);
  int port = config.port;
  try {
    if (port == 0) {
      port = s.bind_to_any_port(config.bind);
      if (port < 0) port = 0;
    } else if (!s.bind_to_port(config.bind, port)) {
      port = 0;
    }
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("http: ") + e.what());
  }
  if (port <= 0) {
    return absl::UnavailableError("cannot listen for HTTP on " + config.bind + ":" +
                                  std::to_string(config.port));
  }
  Impl* raw = impl.get();
  impl->listener = std::thread([raw] {
    try {
      raw->server.listen_after_bind();
    } catch (const std::exception& e) {
      spdlog::error("http: {}", e.what());
    }
  });
  // Serving before Start returns (and so before the ready line), and stop() then always finds the
  // loop running.
  for (int i = 0; i < 500 && !impl->server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl), port));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->ctx.stopping.store(true);
  impl_->server.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

}  // namespace tollgate::http
