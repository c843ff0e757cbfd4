// The etcd backend's key layout, values and JSON helpers (see etcd_codec.h).
#include "backends/etcd/etcd_codec.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/lock_id.h"

namespace tollgate::etcd {

using nlohmann::json;

std::string B64(std::string_view s) { return absl::Base64Escape(AV(s)); }

std::optional<std::string> UnB64(const json& j) {
  if (!j.is_string()) return std::nullopt;
  std::string out;
  if (!absl::Base64Unescape(AV(j.get_ref<const std::string&>()), &out)) return std::nullopt;
  return out;
}

int64_t Int(const json& obj, const char* field) {
  if (!obj.is_object()) return 0;
  auto it = obj.find(field);
  if (it == obj.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  int64_t v = 0;
  if (it->is_string() && absl::SimpleAtoi(AV(it->get_ref<const std::string&>()), &v)) return v;
  return 0;
}

int64_t HeaderRevision(const json& r) {
  if (!r.is_object()) return 0;
  auto h = r.find("header");
  return h == r.end() ? 0 : Int(*h, "revision");
}

bool Succeeded(const json& r) {
  auto it = r.find("succeeded");
  return it != r.end() && it->is_boolean() && it->get<bool>();
}

std::string LockKey(std::string_view key) {
  return absl::StrCat("tollgate/lock/", absl::BytesToHexString(AV(key)));
}
std::string IndexKey(std::string_view lock_id) { return absl::StrCat("tollgate/i/", AV(lock_id)); }
std::string RegKey(std::string_view resource) {
  return absl::StrCat("tollgate/reg/", absl::BytesToHexString(AV(resource)));
}
std::string SemPrefix(std::string_view key) {
  return absl::StrCat("tollgate/sem/", absl::BytesToHexString(AV(key)), "/");
}
std::string SemRangeEnd(std::string_view key) {
  std::string end = SemPrefix(key);
  end.back() = '/' + 1;  // the first key after every "<prefix>..."
  return end;
}
std::string PermitKey(std::string_view key, int64_t slot) {
  char digits[8];
  std::snprintf(digits, sizeof digits, "%04d", static_cast<int>(slot));
  return absl::StrCat(SemPrefix(key), digits);
}
std::optional<int64_t> PermitSlot(std::string_view prefix, std::string_view permit_key) {
  if (permit_key.size() != prefix.size() + 4 || permit_key.substr(0, prefix.size()) != prefix) {
    return std::nullopt;
  }
  const std::string_view digits = permit_key.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  int64_t slot = 0;
  if (!absl::SimpleAtoi(AV(digits), &slot)) return std::nullopt;
  return slot;
}

int64_t TtlSeconds(Duration ttl) {
  const int64_t ns = ttl.count();
  return std::max<int64_t>(1, (ns + 999'999'999) / 1'000'000'000);
}

std::string EncodeLock(const LockValue& v) {
  json j = {{"id", v.id}};
  if (v.owner) j["owner_b64"] = B64(*v.owner);
  if (v.shared) j["shared"] = true;
  if (v.acquired_at) {
    j["at_ns"] =
        std::chrono::duration_cast<std::chrono::nanoseconds>(v.acquired_at->time_since_epoch())
            .count();
  }
  if (v.indexed) j["indexed"] = true;
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
  if (auto it = j.find("shared"); it != j.end()) {
    if (!it->is_boolean()) return std::nullopt;
    v.shared = it->get<bool>();
  }
  if (auto it = j.find("at_ns"); it != j.end()) {
    if (!it->is_number_integer()) return std::nullopt;
    v.acquired_at = WallTime(std::chrono::duration_cast<WallTime::duration>(
        std::chrono::nanoseconds(it->get<int64_t>())));
  }
  if (auto it = j.find("indexed"); it != j.end()) {
    if (!it->is_boolean()) return std::nullopt;
    v.indexed = it->get<bool>();
  }
  return v;
}

bool Holds(const std::string* lock_value, std::string_view lock_id) {
  if (lock_value == nullptr) return false;
  std::optional<LockValue> v = DecodeLock(*lock_value);
  return v && core::ConstantTimeEquals(v->id, lock_id);
}

std::string EncodePermit(const PermitValue& v) {
  json j = {{"id", v.id}, {"limit", v.limit}};
  if (v.owner) j["owner_b64"] = B64(*v.owner);
  return j.dump();
}

std::optional<PermitValue> DecodePermit(const std::string& s) {
  json j = json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("limit") ||
      !j["limit"].is_number_integer()) {
    return std::nullopt;
  }
  PermitValue v;
  v.id = j["id"].get<std::string>();
  v.limit = j["limit"].get<int64_t>();
  if (j.contains("owner_b64")) {
    v.owner = UnB64(j["owner_b64"]);
    if (!v.owner) return std::nullopt;
  }
  return v;
}

std::optional<Kv> ParseKv(const json& e) {
  if (!e.is_object()) return std::nullopt;
  Kv kv;
  std::optional<std::string> key = e.contains("key") ? UnB64(e["key"]) : std::nullopt;
  if (!key) return std::nullopt;
  kv.key = std::move(*key);
  kv.create_revision = Int(e, "create_revision");
  kv.mod_revision = Int(e, "mod_revision");
  kv.lease = Int(e, "lease");
  if (e.contains("value")) {
    std::optional<std::string> v = UnB64(e["value"]);
    if (!v) return std::nullopt;
    kv.value = std::move(*v);
  }
  if (kv.create_revision <= 0 || kv.mod_revision <= 0) return std::nullopt;
  return kv;
}

json IndexPut(std::string_view lock_id, std::string_view key, int64_t lease) {
  return {
      {"request_put",
       {{"key", B64(IndexKey(lock_id))}, {"value", B64(key)}, {"lease", std::to_string(lease)}}}};
}
json IndexDelete(std::string_view lock_id) {
  return {{"request_delete_range", {{"key", B64(IndexKey(lock_id))}}}};
}

json ModIs(const std::string& key, int64_t mod) {
  return {{"key", B64(key)},
          {"result", "EQUAL"},
          {"target", "MOD"},
          {"mod_revision", std::to_string(mod)}};
}
json CreateIs(const std::string& key, int64_t create) {
  return {{"key", B64(key)},
          {"result", "EQUAL"},
          {"target", "CREATE"},
          {"create_revision", std::to_string(create)}};
}
json AllCreatedBefore(const std::string& key, const std::string& range_end, int64_t below) {
  return {{"key", B64(key)},
          {"range_end", B64(range_end)},
          {"result", "LESS"},
          {"target", "CREATE"},
          {"create_revision", std::to_string(below)}};
}

absl::Status Contention(std::string_view what) {
  return absl::UnavailableError(absl::StrCat("etcd: ", AV(what), " lost ", kMaxTxnRetries,
                                             " races in a row with other writers of the same key "
                                             "(contention); try again"));
}
absl::Status Unexpected(std::string_view what) {
  return absl::InternalError(absl::StrCat("unexpected reply from etcd to ", AV(what)));
}
absl::Status NotHeld(std::string_view key) {
  return absl::FailedPreconditionError(
      absl::StrCat("lease on '", AV(key), "' is not held by this lock_id"));
}
absl::Status PermitNotHeld(std::string_view key) {
  return absl::FailedPreconditionError(
      absl::StrCat("permit on semaphore '", AV(key), "' is not held by this permit_id"));
}
absl::Status LimitDiffers(std::string_view key, int64_t asked, int64_t held) {
  return absl::InvalidArgumentError(absl::StrCat("limit ", asked, " differs from the limit ", held,
                                                 " of the current holders of semaphore \"",
                                                 AV(key.substr(0, 64)), "\""));
}

}  // namespace tollgate::etcd
