// The etcd backend (see include/tollgate/etcd_backend.h for the key layout, the TTL rounding and
// the error mapping).
#include "tollgate/etcd_backend.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/lock_id.h"
#include "nlohmann/json.hpp"

namespace tollgate {
namespace {

using nlohmann::json;

constexpr int kMaxTxnRetries = 100;

std::string B64(std::string_view s) { return absl::Base64Escape(AV(s)); }

std::optional<std::string> UnB64(const json& j) {
  if (!j.is_string()) return std::nullopt;
  std::string out;
  if (!absl::Base64Unescape(AV(j.get_ref<const std::string&>()), &out)) return std::nullopt;
  return out;
}

// The gateway writes int64 fields as JSON strings ("7") and omits zero values.
int64_t Int(const json& obj, const char* field) {
  if (!obj.is_object()) return 0;
  auto it = obj.find(field);
  if (it == obj.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  int64_t v = 0;
  if (it->is_string() && absl::SimpleAtoi(AV(it->get_ref<const std::string&>()), &v)) return v;
  return 0;
}

std::string LockKey(std::string_view key) {
  return absl::StrCat("tollgate/lock/", absl::BytesToHexString(AV(key)));
}
std::string RegKey(std::string_view r) {
  return absl::StrCat("tollgate/reg/", absl::BytesToHexString(AV(r)));
}

// Whole seconds, rounded up (etcd leases are whole seconds).
int64_t TtlSeconds(Duration ttl) {
  const int64_t ns = ttl.count();
  return std::max<int64_t>(1, (ns + 999'999'999) / 1'000'000'000);
}

struct EtcdUrl {
  std::string host;  // as written in an http URL ([..] kept for IPv6)
  int port = 2379;
};

absl::StatusOr<EtcdUrl> ParseUrl(const std::string& url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid etcd url '", url.substr(0, 200),
                                                   "': ", AV(why), " (expected etcd://host:port)"));
  };
  constexpr std::string_view kScheme = "etcd://";
  std::string_view s = url;
  if (s.substr(0, kScheme.size()) != kScheme) return bad("must start with etcd://");
  s.remove_prefix(kScheme.size());
  if (!s.empty() && s.back() == '/') s.remove_suffix(1);
  if (s.find_first_of("/@?#") != std::string_view::npos) {
    return bad("only host and port are accepted");
  }
  EtcdUrl out;
  std::string_view port_text;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1) return bad("bad [IPv6] host");
    out.host = std::string(s.substr(0, close + 1));
    std::string_view after = s.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':' after ]");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = s.find(':');
    out.host = std::string(s.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = s.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (out.host.empty()) return bad("empty host");
  for (char c : out.host) {
    if (c <= ' ' || c == 0x7f || c == '\\') return bad("bad character in host");
  }
  if (!port_text.empty()) {
    int p = 0;
    if (port_text.size() > 5 || !absl::SimpleAtoi(AV(port_text), &p) || p < 1 || p > 65535 ||
        port_text.find_first_not_of("0123456789") != std::string_view::npos) {
      return bad("port must be an integer in [1, 65535]");
    }
    out.port = p;
  }
  return out;
}

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// A read of one key: absent, or its revisions, lease and value.
struct Kv {
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;
  std::string value;
};

// The lock's value.
struct LockValue {
  std::string id;
  std::optional<std::string> owner;
};

std::string EncodeLock(const LockValue& v) {
  json j = {{"id", v.id}};
  if (v.owner) j["owner_b64"] = B64(*v.owner);
  return j.dump();
}

std::optional<LockValue> DecodeLock(const std::string& s) {
  json j = json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) return std::nullopt;
  LockValue v;
  v.id = j["id"].get<std::string>();
  if (j.contains("owner_b64")) {
    v.owner = UnB64(j["owner_b64"]);
    if (!v.owner) return std::nullopt;
  }
  return v;
}

// One watch stream (POST /v3/watch): the gateway writes one JSON object per line, {"result":
// WatchResponse} or {"error": Status}. The first result says "created"; later ones carry events.
// The watch is created with the NOPUT filter, so any event is a DELETE of the watched key.
struct WatchStream {
  std::string pending;    // bytes of an incomplete line
  bool created = false;   // etcd confirmed the watch
  bool deleted = false;   // a DELETE event arrived
  bool canceled = false;  // etcd cancelled the watch (e.g. start revision compacted away)
  std::string error;      // an {"error": ...} line, or a line that is not JSON
  bool done() const { return deleted || canceled || !error.empty(); }
  void OnLine(std::string_view line) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      error = std::string(line.substr(0, 300));
      return;
    }
    if (auto e = j.find("error"); e != j.end()) {
      error = e->is_object() && e->contains("message") && (*e)["message"].is_string()
                  ? (*e)["message"].get<std::string>()
                  : e->dump().substr(0, 300);
      return;
    }
    auto r = j.find("result");
    if (r == j.end() || !r->is_object()) return;
    if (auto c = r->find("created"); c != r->end() && c->is_boolean() && c->get<bool>()) {
      created = true;
    }
    if (auto c = r->find("canceled"); c != r->end() && c->is_boolean() && c->get<bool>()) {
      canceled = true;
    }
    if (auto ev = r->find("events"); ev != r->end() && ev->is_array()) {
      for (const json& e : *ev) {
        auto t = e.find("type");
        if (t != e.end() && t->is_string() && t->get_ref<const std::string&>() == "DELETE") {
          deleted = true;
        }
      }
    }
  }
};

// libcurl write callback for the watch: returning less than it was given aborts the transfer
// (CURLE_WRITE_ERROR), which is how the watch stops at its first DELETE.
size_t OnWatchData(char* data, size_t size, size_t n, void* user) {
  auto* w = static_cast<WatchStream*>(user);
  w->pending.append(data, size * n);
  size_t nl;
  while (!w->done() && (nl = w->pending.find('\n')) != std::string::npos) {
    w->OnLine(std::string_view(w->pending).substr(0, nl));
    w->pending.erase(0, nl + 1);
  }
  return w->done() ? 0 : size * n;
}

// Sets `c` up for one POST of `payload` (which must outlive the request) to `url`, the response
// body going to write_fn(write_data); connecting is bounded by connect_timeout and the whole
// request by total_timeout (each at least 1 ms).
void PreparePost(CURL* c, const std::string& url, const std::string& payload,
                 curl_write_callback write_fn, void* write_data, Duration connect_timeout,
                 Duration total_timeout) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_fn);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, write_data);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(
      c, CURLOPT_CONNECTTIMEOUT_MS,
      std::max(static_cast<long>(duration_cast<milliseconds>(connect_timeout).count()), 1L));
  curl_easy_setopt(
      c, CURLOPT_TIMEOUT_MS,
      std::max(static_cast<long>(duration_cast<milliseconds>(total_timeout).count()), 1L));
}

class EtcdBackend final : public Backend {
 public:
  EtcdBackend(EtcdUrl url, Duration timeout)
      : base_(absl::StrCat("http://", url.host, ":", url.port)), timeout_(timeout) {}
  ~EtcdBackend() override {
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
    if (watch_curl_ != nullptr) curl_easy_cleanup(watch_curl_);
  }

  std::string_view kind() const override { return "etcd"; }

  absl::Status Init() {
    std::lock_guard<std::mutex> l(mu_);
    curl_ = curl_easy_init();
    watch_curl_ = curl_easy_init();
    if (curl_ == nullptr || watch_curl_ == nullptr) {
      return absl::InternalError("etcd: cannot create a curl handle");
    }
    // Probe: a range on a key nobody uses.
    return Call("/v3/kv/range", json{{"key", B64("tollgate/probe")}}).status();
  }

  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
    std::lock_guard<std::mutex> l(mu_);
    const std::string lock = LockKey(key);
    absl::StatusOr<std::pair<int64_t, int64_t>> lease = Grant(TtlSeconds(ttl));
    if (!lease.ok()) return lease.status();
    LeaseGrant grant{core::NewLockId(), 0, std::chrono::seconds(lease->second)};
    const json txn = {
        {"compare", json::array({{{"key", B64(lock)},
                                  {"result", "EQUAL"},
                                  {"target", "CREATE"},
                                  {"create_revision", "0"}}})},
        {"success", json::array({{{"request_put",
                                   {{"key", B64(lock)},
                                    {"value", B64(EncodeLock({grant.lock_id, std::move(owner)}))},
                                    {"lease", std::to_string(lease->first)}}}}})}};
    absl::StatusOr<json> r = Call("/v3/kv/txn", txn);
    if (!r.ok() || !Succeeded(*r)) {
      Revoke(lease->first);  // best effort: it expires anyway
      if (!r.ok()) return r.status();
      return std::optional<LeaseGrant>();
    }
    const int64_t rev = Int((*r)["header"], "revision");
    if (rev <= 0) return Unexpected("txn");
    grant.fence = static_cast<uint64_t>(rev);  // == the lock's create_revision
    return std::optional<LeaseGrant>(std::move(grant));
  }

  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    std::lock_guard<std::mutex> l(mu_);
    const std::string lock = LockKey(key);
    for (int attempt = 0; attempt < kMaxTxnRetries; ++attempt) {
      absl::StatusOr<std::optional<Kv>> kv = Get(lock);
      if (!kv.ok()) return kv.status();
      if (!Holds(*kv, lock_id)) return NotHeld(key);
      const json txn = {
          {"compare", json::array({ModIs(lock, (*kv)->mod_revision)})},
          {"success", json::array({{{"request_delete_range", {{"key", B64(lock)}}}}})}};
      absl::StatusOr<json> r = Call("/v3/kv/txn", txn);
      if (!r.ok()) return r.status();
      if (Succeeded(*r)) {
        if ((*kv)->lease != 0) Revoke((*kv)->lease);
        return absl::OkStatus();
      }
    }
    return Contention("release");
  }

  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
    std::lock_guard<std::mutex> l(mu_);
    const std::string lock = LockKey(key);
    for (int attempt = 0; attempt < kMaxTxnRetries; ++attempt) {
      absl::StatusOr<std::optional<Kv>> kv = Get(lock);
      if (!kv.ok()) return kv.status();
      if (!Holds(*kv, lock_id)) return NotHeld(key);
      absl::StatusOr<std::pair<int64_t, int64_t>> lease = Grant(TtlSeconds(ttl));
      if (!lease.ok()) return lease.status();
      // Same value, new lease: mod_revision changes, create_revision (the fence) does not. The
      // guard fails if the lock expired (deleted) meanwhile, so it is never revived.
      const json txn = {{"compare", json::array({ModIs(lock, (*kv)->mod_revision)})},
                        {"success", json::array({{{"request_put",
                                                   {{"key", B64(lock)},
                                                    {"value", B64((*kv)->value)},
                                                    {"lease", std::to_string(lease->first)}}}}})}};
      absl::StatusOr<json> r = Call("/v3/kv/txn", txn);
      if (r.ok() && Succeeded(*r)) {
        if ((*kv)->lease != 0) Revoke((*kv)->lease);
        return Duration(std::chrono::seconds(lease->second));
      }
      Revoke(lease->first);
      if (!r.ok()) return r.status();
    }
    return Contention("extend");
  }

  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    std::lock_guard<std::mutex> l(mu_);
    absl::StatusOr<std::optional<Kv>> kv = Get(LockKey(key));
    if (!kv.ok()) return kv.status();
    if (!kv->has_value()) return std::optional<LeaseInfo>();
    std::optional<LockValue> v = DecodeLock((*kv)->value);
    if (!v) return Unexpected("lock value");
    LeaseInfo info;
    info.fence = static_cast<uint64_t>((*kv)->create_revision);
    info.owner = std::move(v->owner);
    if ((*kv)->lease != 0) {
      absl::StatusOr<json> t =
          Call("/v3/lease/timetolive", json{{"ID", std::to_string((*kv)->lease)}});
      if (!t.ok()) return t.status();
      const int64_t secs = Int(*t, "TTL");
      if (secs < 0) return std::optional<LeaseInfo>();  // expired just now
      info.ttl_remaining = std::chrono::seconds(secs);
    }
    return std::optional<LeaseInfo>(std::move(info));
  }

  // Reads the lock and, if it is held, watches it from the revision after the read, so a delete
  // between the read and the watch's creation is still delivered (etcd replays history from
  // start_revision).
  absl::Status WaitForRelease(std::string_view key, Duration max_wait) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (max_wait <= Duration(0)) return absl::OkStatus();
    const SteadyTime deadline = std::chrono::steady_clock::now() + max_wait;
    const std::string lock = LockKey(key);
    int64_t revision = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      absl::StatusOr<json> r = Call("/v3/kv/range", json{{"key", B64(lock)}, {"keys_only", true}});
      if (!r.ok()) return r.status();
      auto kvs = r->find("kvs");
      if (kvs == r->end() || !kvs->is_array() || kvs->empty()) return absl::OkStatus();  // free
      revision = Int((*r)["header"], "revision");
      if (revision <= 0) return Unexpected("range");
    }
    return WatchForDelete(lock, revision, deadline).status();
  }

  // Watches `lock` for a DELETE at a revision > `after_revision` until `deadline`: true if one
  // came (or etcd cancelled the watch, e.g. because that revision was compacted: the caller looks
  // again), false at the deadline. Uses its own curl handle, so the request mutex stays free;
  // concurrent watches on one backend object take turns.
  absl::StatusOr<bool> WatchForDelete(const std::string& lock, int64_t after_revision,
                                      SteadyTime deadline) {
    std::lock_guard<std::mutex> l(watch_mu_);
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (remaining <= std::chrono::milliseconds(0)) return false;
    const std::string url = absl::StrCat(base_, "/v3/watch");
    const std::string payload = json{{"create_request",
                                      {{"key", B64(lock)},
                                       {"start_revision", std::to_string(after_revision + 1)},
                                       {"filters", json::array({"NOPUT"})}}}}
                                    .dump();
    WatchStream stream;
    CURL* c = watch_curl_;
    PreparePost(c, url, payload, &OnWatchData, &stream, timeout_, remaining);
    const CURLcode rc = curl_easy_perform(c);
    if (stream.deleted || stream.canceled) return true;
    const std::string where = absl::StrCat("etcd ", base_, "/v3/watch: ");
    if (!stream.error.empty()) return absl::UnavailableError(absl::StrCat(where, stream.error));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OPERATION_TIMEDOUT &&
        (stream.created || std::chrono::steady_clock::now() >= deadline)) {
      return false;  // max_wait passed with the lock still there
    }
    if (rc != CURLE_OK) return absl::UnavailableError(absl::StrCat(where, curl_easy_strerror(rc)));
    if (status != 200) {
      return absl::UnavailableError(
          absl::StrCat(where, "HTTP ", status, ": ", stream.pending.substr(0, 300)));
    }
    // The server ended the stream without an event (it is shutting down, say).
    return absl::UnavailableError(absl::StrCat(where, "the watch stream ended early"));
  }

  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return st;
    if (fence == 0) return absl::InvalidArgumentError("fence must be a positive integer");
    std::lock_guard<std::mutex> l(mu_);
    const std::string reg = RegKey(resource);
    const std::string encoded = json{{"fence", fence}, {"value", B64(value)}}.dump();
    for (int attempt = 0; attempt < kMaxTxnRetries; ++attempt) {
      int64_t revision = 0;
      absl::StatusOr<std::optional<Kv>> kv = Get(reg, &revision);
      if (!kv.ok()) return kv.status();
      // A fence is the create revision of a lock key, so every fence issued so far is at most the
      // store's revision now: a higher one was never issued, and accepting it would make every
      // real holder's later write stale.
      if (fence > static_cast<uint64_t>(revision)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "fence ", fence, " was never issued; every fence issued so far is at most ", revision,
            ", etcd's current revision (use the fence of a lease you hold)"));
      }
      int64_t mod = 0;
      if (kv->has_value()) {
        absl::StatusOr<FencedValue> cur = DecodeReg((*kv)->value);
        if (!cur.ok()) return cur.status();
        if (fence < cur->fence) {
          return absl::AbortedError(absl::StrCat("fence ", fence, " is older than ", cur->fence));
        }
        mod = (*kv)->mod_revision;
      }
      const json txn = {
          {"compare", json::array({ModIs(reg, mod)})},
          {"success",
           json::array({{{"request_put", {{"key", B64(reg)}, {"value", B64(encoded)}}}}})}};
      absl::StatusOr<json> r = Call("/v3/kv/txn", txn);
      if (!r.ok()) return r.status();
      if (Succeeded(*r)) return absl::OkStatus();
    }
    return Contention("fenced write");
  }

  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(mu_);
    absl::StatusOr<std::optional<Kv>> kv = Get(RegKey(resource));
    if (!kv.ok()) return kv.status();
    if (!kv->has_value()) return std::optional<FencedValue>();
    absl::StatusOr<FencedValue> v = DecodeReg((*kv)->value);
    if (!v.ok()) return v.status();
    return std::optional<FencedValue>(std::move(*v));
  }

  absl::StatusOr<Decision> Throttle(std::string_view, const BucketParams&, Decimal) override {
    return absl::UnimplementedError("rate limiting is not offered on etcd");
  }
  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck>, Decimal) override {
    return absl::UnimplementedError("rate limiting is not offered on etcd");
  }

 private:
  // The optimistic loops give up after kMaxTxnRetries lost races. Unavailable (retryable), never
  // Aborted: Aborted means "stale fence" to callers.
  static absl::Status Contention(std::string_view what) {
    return absl::UnavailableError(absl::StrCat("etcd: ", AV(what), " lost ", kMaxTxnRetries,
                                               " races in a row with other writers of the same key "
                                               "(contention); try again"));
  }
  static absl::Status Unexpected(std::string_view what) {
    return absl::InternalError(absl::StrCat("unexpected reply from etcd to ", AV(what)));
  }
  static absl::Status NotHeld(std::string_view key) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease on '", AV(key), "' is not held by this lock_id"));
  }
  static bool Succeeded(const json& r) {
    auto it = r.find("succeeded");
    return it != r.end() && it->is_boolean() && it->get<bool>();
  }
  static json ModIs(const std::string& key, int64_t mod) {
    return {{"key", B64(key)},
            {"result", "EQUAL"},
            {"target", "MOD"},
            {"mod_revision", std::to_string(mod)}};
  }
  static bool Holds(const std::optional<Kv>& kv, std::string_view lock_id) {
    if (!kv) return false;
    std::optional<LockValue> v = DecodeLock(kv->value);
    return v && core::ConstantTimeEquals(v->id, lock_id);
  }
  static absl::StatusOr<FencedValue> DecodeReg(const std::string& s) {
    json j = json::parse(s, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("fence") || !j["fence"].is_number_unsigned()) {
      return Unexpected("register value");
    }
    std::optional<std::string> value = j.contains("value") ? UnB64(j["value"]) : std::nullopt;
    if (!value) return Unexpected("register value");
    return FencedValue{std::move(*value), j["fence"].get<uint64_t>()};
  }

  // {lease id, granted seconds}.
  absl::StatusOr<std::pair<int64_t, int64_t>> Grant(int64_t seconds) {
    absl::StatusOr<json> r = Call("/v3/lease/grant", json{{"TTL", std::to_string(seconds)}});
    if (!r.ok()) return r.status();
    const int64_t id = Int(*r, "ID"), ttl = Int(*r, "TTL");
    if (id == 0 || ttl <= 0) return Unexpected("lease grant");
    return std::make_pair(id, ttl);
  }
  void Revoke(int64_t lease) {
    (void)Call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}});
  }

  // Reads one key; sets *revision (if given) to the store's revision at the read.
  absl::StatusOr<std::optional<Kv>> Get(const std::string& key, int64_t* revision = nullptr) {
    absl::StatusOr<json> r = Call("/v3/kv/range", json{{"key", B64(key)}});
    if (!r.ok()) return r.status();
    if (revision != nullptr) {
      *revision = r->contains("header") ? Int((*r)["header"], "revision") : 0;
      if (*revision <= 0) return Unexpected("range");
    }
    auto kvs = r->find("kvs");
    if (kvs == r->end() || !kvs->is_array() || kvs->empty()) return std::optional<Kv>();
    const json& e = (*kvs)[0];
    Kv kv;
    kv.create_revision = Int(e, "create_revision");
    kv.mod_revision = Int(e, "mod_revision");
    kv.lease = Int(e, "lease");
    if (e.contains("value")) {
      std::optional<std::string> v = UnB64(e["value"]);
      if (!v) return Unexpected("range");
      kv.value = std::move(*v);
    }
    if (kv.create_revision <= 0 || kv.mod_revision <= 0) return Unexpected("range");
    return std::optional<Kv>(std::move(kv));
  }

  // POSTs `body` to the gateway and parses the reply. Unavailable on transport errors, timeouts,
  // 5xx and etcd's unavailable/deadline codes; Internal for other etcd errors.
  absl::StatusOr<json> Call(std::string_view path, const json& body) {
    const std::string url = absl::StrCat(base_, AV(path));
    const std::string payload = body.dump();
    std::string reply;
    PreparePost(curl_, url, payload, &WriteBody, &reply, timeout_, timeout_);
    const CURLcode rc = curl_easy_perform(curl_);
    if (rc != CURLE_OK) {
      return absl::UnavailableError(
          absl::StrCat("etcd ", base_, AV(path), ": ", curl_easy_strerror(rc)));
    }
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    json j = json::parse(reply, nullptr, /*allow_exceptions=*/false);
    if (status != 200 || !j.is_object()) {
      std::string msg = reply.substr(0, 300);
      int64_t code = 0;
      if (j.is_object()) {
        code = Int(j, "code");
        auto it = j.find("error");
        if (it != j.end() && it->is_string()) msg = it->get<std::string>();
      }
      // gRPC codes 4 (deadline exceeded) and 14 (unavailable).
      if (status >= 500 && (code == 0 || code == 4 || code == 14)) {
        return absl::UnavailableError(absl::StrCat("etcd ", base_, AV(path), ": ", msg));
      }
      // 4 deadline exceeded, 14 unavailable, 8 resource exhausted ("mvcc: database space
      // exceeded", too many requests): outages and overload, not bad input.
      if (code == 4 || code == 14 || code == 8) {
        return absl::UnavailableError(absl::StrCat("etcd ", base_, AV(path), ": ", msg));
      }
      return absl::InternalError(
          absl::StrCat("etcd ", base_, AV(path), ": HTTP ", status, ": ", msg));
    }
    return j;
  }

  const std::string base_;
  const Duration timeout_;
  std::mutex mu_;  // serializes requests on curl_
  CURL* curl_ = nullptr;
  std::mutex watch_mu_;  // one watch at a time on watch_curl_
  CURL* watch_curl_ = nullptr;
};

}  // namespace

namespace etcd_internal {

absl::StatusOr<bool> WatchForRelease(Backend& etcd, std::string_view key, int64_t after_revision,
                                     Duration max_wait) {
  auto* b = etcd.kind() == "etcd" ? dynamic_cast<EtcdBackend*>(&etcd) : nullptr;
  if (b == nullptr) return absl::InvalidArgumentError("WatchForRelease needs an etcd backend");
  if (absl::Status st = ValidateKey(key); !st.ok()) return st;
  return b->WatchForDelete(LockKey(key), after_revision,
                           std::chrono::steady_clock::now() + max_wait);
}

}  // namespace etcd_internal

absl::StatusOr<std::unique_ptr<Backend>> NewEtcdBackend(const std::string& url, Duration timeout) {
  absl::StatusOr<EtcdUrl> u = ParseUrl(url);
  if (!u.ok()) return u.status();
  if (timeout <= Duration(0) || timeout > std::chrono::hours(1)) {
    return absl::InvalidArgumentError("etcd timeout must be positive and at most 1 hour");
  }
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  auto b = std::make_unique<EtcdBackend>(std::move(*u), timeout);
  if (absl::Status st = b->Init(); !st.ok()) return st;
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace tollgate
