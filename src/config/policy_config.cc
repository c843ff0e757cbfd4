#include "tollgate/policy_config.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "config/yaml_document.h"
#include "core/absl_compat.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace tollgate {
namespace {

constexpr uint64_t kMaxMaxBuckets = 1'000'000'000;
constexpr off_t kMaxFileBytes = 16 << 20;
constexpr auto kDebounce = std::chrono::milliseconds(100);

// ---- Parsing ----

// Every error names the source file, the 1-based line and column, and the dotted path of the field.
class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  absl::StatusOr<PolicyDocument> Parse(std::string_view text, bool validate) {
    const config::YamlDocument loaded = config::LoadFirstYamlDocument(text);
    if (loaded.root.IsNull()) {
      return Error(YAML::Mark::null_mark(), "",
                   "the file is empty; expected a top-level 'policies' map");
    }
    if (loaded.next) {
      return Error(*loaded.next, "", "only one YAML document is allowed (found a second '---')");
    }
    const YAML::Node& root = loaded.root;
    auto top = Entries(root, "", {"policies"});
    if (!top.ok()) return top.status();
    const Entry* policies = Require(*top, root, "", "policies");
    if (policies == nullptr) return status_;
    const YAML::Mark policies_mark = policies->key_mark;
    auto named = Entries(policies->value, "policies", {}, &policies_mark);
    if (!named.ok()) return named.status();
    if (named->empty()) {
      return Error(ValueMark(*policies), "policies", "defines no policies; at least one is needed");
    }
    PolicyDocument doc;
    doc.source = std::string(source_);
    for (const Entry& e : *named) {
      const std::string path = absl::StrCat("policies.", e.key);
      PolicyEntry entry;
      entry.pos = Pos(e.key_mark);
      entry.cost_pos = entry.pos;
      if (absl::Status st = ParsePolicy(e, path, &entry); !st.ok()) return st;
      entry.validation = ValidatePolicy(entry.spec);
      if (!entry.validation.ok()) {
        entry.validation = Error(e.key_mark, path, SV(entry.validation.message()));
        if (validate) return entry.validation;
      }
      doc.policies.push_back(std::move(entry));
    }
    return doc;
  }

  static SourcePos Pos(const YAML::Mark& m) {
    if (m.is_null() || m.line < 0 || m.column < 0) return {};
    return {m.line + 1, m.column + 1};
  }

  // A YAML syntax error reported by yaml-cpp.
  absl::Status SyntaxError(const YAML::Mark& mark, std::string_view msg) const {
    return Error(mark, "", absl::StrCat("YAML syntax error: ", AV(msg)));
  }

  absl::Status Error(const YAML::Mark& mark, std::string_view path, std::string_view what) const {
    std::string loc(source_);
    if (!mark.is_null() && mark.line >= 0 && mark.column >= 0) {
      absl::StrAppend(&loc, ":", mark.line + 1, ":", mark.column + 1);
    }
    if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(loc, ": ", AV(what)));
    return absl::InvalidArgumentError(absl::StrCat(loc, ": ", AV(path), ": ", AV(what)));
  }

 private:
  struct Entry {
    std::string key;
    YAML::Mark key_mark;
    YAML::Node value;
  };

  static const char* Kind(const YAML::Node& n) {
    switch (n.Type()) {
      case YAML::NodeType::Null:
        return "nothing (null)";
      case YAML::NodeType::Scalar:
        return "a single value";
      case YAML::NodeType::Sequence:
        return "a list";
      case YAML::NodeType::Map:
        return "a map";
      case YAML::NodeType::Undefined:
        break;
    }
    return "nothing";
  }

  // Where a value is. An empty value (`key:` with nothing after it) is null and yaml-cpp places it
  // at the next token, possibly lines later, so nulls point at their key.
  static YAML::Mark ValueMark(const Entry& e) {
    const YAML::Mark m = e.value.Mark();
    return m.is_null() || e.value.IsNull() ? e.key_mark : m;
  }

  // The entries of a map, in file order. Rejects a node that is not a map, keys that are not
  // plain values, duplicate keys and (if `allowed` is not empty) keys not in `allowed`.
  absl::StatusOr<std::vector<Entry>> Entries(const YAML::Node& map, std::string_view path,
                                             std::initializer_list<std::string_view> allowed,
                                             const YAML::Mark* fallback = nullptr) {
    if (!map.IsMap()) {
      const bool use_key = map.Mark().is_null() || map.IsNull();
      const YAML::Mark m = use_key && fallback != nullptr ? *fallback : map.Mark();
      return Error(m, path, absl::StrCat("expected a map, got ", Kind(map)));
    }
    std::vector<Entry> out;
    absl::flat_hash_set<std::string> seen;
    // yaml-cpp's iterator yields key/value pairs by value (`it->first` would dangle): copy them.
    for (const std::pair<YAML::Node, YAML::Node>& kv : map) {
      const YAML::Node& k = kv.first;
      if (!k.IsScalar()) {
        return Error(k.Mark(), path, absl::StrCat("a key must be a single value, got ", Kind(k)));
      }
      const std::string key = k.Scalar();
      const std::string key_path = path.empty() ? key : absl::StrCat(AV(path), ".", key);
      if (allowed.size() > 0) {
        bool known = false;
        std::string list;
        for (std::string_view a : allowed) {
          known |= a == key;
          absl::StrAppend(&list, list.empty() ? "" : ", ", AV(a));
        }
        if (!known) {
          return Error(k.Mark(), key_path,
                       absl::StrCat("unknown key (expected one of: ", list, ")"));
        }
      }
      if (!seen.insert(key).second) {
        return Error(k.Mark(), key_path, "duplicate key");
      }
      out.push_back(Entry{key, k.Mark(), kv.second});
    }
    return out;
  }

  // The entry named `key`, or nullptr (status_ set to the error) if it is missing.
  const Entry* Require(const std::vector<Entry>& entries, const YAML::Node& map,
                       std::string_view path, std::string_view key) {
    if (const Entry* e = Find(entries, key)) return e;
    const std::string key_path =
        path.empty() ? std::string(key) : absl::StrCat(AV(path), ".", AV(key));
    status_ = Error(map.Mark(), key_path, "required key is missing");
    return nullptr;
  }

  static const Entry* Find(const std::vector<Entry>& entries, std::string_view key) {
    for (const Entry& e : entries) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }

  absl::StatusOr<std::string> Scalar(const Entry& e, std::string_view path, const char* want) {
    if (!e.value.IsScalar()) {
      return Error(ValueMark(e), path, absl::StrCat("expected ", want, ", got ", Kind(e.value)));
    }
    return e.value.Scalar();
  }

  absl::StatusOr<Decimal> Number(const Entry& e, std::string_view path, Decimal max) {
    auto text = Scalar(e, path, "a number");
    if (!text.ok()) return text.status();
    auto d = Decimal::ParsePositive(*text, "value", max);
    if (!d.ok()) return Error(ValueMark(e), path, SV(d.status().message()));
    return *d;
  }

  absl::StatusOr<bool> Bool(const Entry& e, std::string_view path) {
    auto text = Scalar(e, path, "true or false");
    if (!text.ok()) return text.status();
    if (*text == "true") return true;
    if (*text == "false") return false;
    return Error(ValueMark(e), path, absl::StrCat("expected true or false, got '", *text, "'"));
  }

  absl::StatusOr<uint64_t> Count(const Entry& e, std::string_view path, uint64_t max) {
    auto text = Scalar(e, path, "a whole number");
    if (!text.ok()) return text.status();
    uint64_t v = 0;
    bool ok = !text->empty() && text->size() <= 19;
    for (char c : *text) {
      if (c < '0' || c > '9') {
        ok = false;
        break;
      }
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!ok || v == 0 || v > max) {
      return Error(ValueMark(e), path,
                   absl::StrCat("expected a whole number from 1 to ", max, ", got '",
                                text->substr(0, 40), "'"));
    }
    return v;
  }

  absl::Status ParsePolicy(const Entry& pe, const std::string& path, PolicyEntry* out) {
    PolicySpec& spec = out->spec;
    spec.name = pe.key;
    const YAML::Mark key_mark = pe.key_mark;
    auto entries = Entries(pe.value, path, {"layers", "cost", "expect"}, &key_mark);
    if (!entries.ok()) return entries.status();
    const Entry* layers = Require(*entries, pe.value, path, "layers");
    if (layers == nullptr) return status_;
    const std::string lpath = path + ".layers";
    if (!layers->value.IsSequence()) {
      return Error(ValueMark(*layers), lpath,
                   absl::StrCat("expected a list of layers, got ", Kind(layers->value)));
    }
    if (layers->value.size() == 0) {
      return Error(ValueMark(*layers), lpath, "needs at least one layer");
    }
    for (size_t i = 0; i < layers->value.size(); ++i) {
      const YAML::Node node = layers->value[i];
      auto layer = ParseLayer(node, absl::StrCat(lpath, "[", i, "]"), layers->key_mark);
      if (!layer.ok()) return layer.status();
      spec.layers.push_back(*std::move(layer));
      out->layer_pos.push_back(Pos(node.Mark()));
    }
    if (const Entry* cost = Find(*entries, "cost")) {
      auto c = ParseCost(*cost, path + ".cost");
      if (!c.ok()) return c.status();
      spec.cost = *std::move(c);
      out->cost_pos = Pos(cost->key_mark);
    }
    if (const Entry* expect = Find(*entries, "expect")) {
      auto x = ParseExpect(*expect, path + ".expect");
      if (!x.ok()) return x.status();
      out->expect = *std::move(x);
    }
    return absl::OkStatus();
  }

  // The `expect:` section (docs/policy-check.md).
  absl::StatusOr<PolicyExpectations> ParseExpect(const Entry& xe, const std::string& path) {
    PolicyExpectations x;
    const YAML::Mark key_mark = xe.key_mark;
    auto entries =
        Entries(xe.value, path,
                {"users", "ips", "fields", "backend_ops_per_sec", "jitter_window_ms", "attackers",
                 "attack_horizon_s", "type_field", "request_fields", "messages"},
                &key_mark);
    if (!entries.ok()) return entries.status();
    for (const Entry& e : *entries) {
      const std::string fpath = absl::StrCat(path, ".", e.key);
      if (e.key == "users" || e.key == "ips" || e.key == "attackers") {
        auto v = Count(e, fpath, kMaxMaxBuckets);
        if (!v.ok()) return v.status();
        if (e.key == "users") {
          x.users = *v;
        } else if (e.key == "ips") {
          x.ips = *v;
        } else {
          x.attackers = *v;
        }
      } else if (e.key == "jitter_window_ms") {
        auto v = Count(e, fpath, 600'000);
        if (!v.ok()) return v.status();
        x.jitter_window = std::chrono::milliseconds(*v);
      } else if (e.key == "attack_horizon_s") {
        auto v = Count(e, fpath, 86'400);
        if (!v.ok()) return v.status();
        x.attack_horizon = std::chrono::seconds(*v);
      } else if (e.key == "backend_ops_per_sec") {
        auto v = Number(e, fpath, kMaxRate);
        if (!v.ok()) return v.status();
        x.backend_ops_per_sec = *v;
      } else if (e.key == "type_field") {
        auto v = FieldName(e, fpath);
        if (!v.ok()) return v.status();
        x.type_field = *std::move(v);
      } else if (e.key == "fields") {
        const YAML::Mark m = e.key_mark;
        auto table = Entries(e.value, fpath, {}, &m);
        if (!table.ok()) return table.status();
        for (const Entry& f : *table) {
          const std::string ffpath = absl::StrCat(fpath, ".", f.key);
          if (!IsFieldName(f.key)) {
            return Error(f.key_mark, ffpath, "not a field name ([a-z_][a-z0-9_]*, at most 64)");
          }
          auto v = Count(f, ffpath, kMaxMaxBuckets);
          if (!v.ok()) return v.status();
          x.fields.emplace_back(f.key, *v);
        }
      } else if (e.key == "request_fields") {
        if (!e.value.IsSequence()) {
          return Error(ValueMark(e), fpath,
                       absl::StrCat("expected a list of field names, got ", Kind(e.value)));
        }
        std::vector<std::string> names;
        for (size_t i = 0; i < e.value.size(); ++i) {
          const YAML::Node n = e.value[i];
          const std::string ipath = absl::StrCat(fpath, "[", i, "]");
          if (!n.IsScalar() || !IsFieldName(n.Scalar())) {
            return Error(n.Mark(), ipath,
                         "expected a field name ([a-z_][a-z0-9_]*, at most 64 characters)");
          }
          names.push_back(n.Scalar());
        }
        x.request_fields = std::move(names);
      } else if (e.key == "messages") {
        const YAML::Mark m = e.key_mark;
        auto types = Entries(e.value, fpath, {}, &m);
        if (!types.ok()) return types.status();
        for (const Entry& t : *types) {
          const std::string tpath = absl::StrCat(fpath, ".", t.key);
          MessageExpectation msg;
          msg.type = t.key;
          const YAML::Mark tm = t.key_mark;
          auto props = Entries(t.value, tpath, {"rate", "tick_rate"}, &tm);
          if (!props.ok()) return props.status();
          for (const Entry& p : *props) {
            auto v = Number(p, absl::StrCat(tpath, ".", p.key), kMaxRate);
            if (!v.ok()) return v.status();
            (p.key == "rate" ? msg.rate : msg.tick_rate) = *v;
          }
          x.messages.push_back(std::move(msg));
        }
      }
    }
    return x;
  }

  absl::StatusOr<std::string> FieldName(const Entry& e, std::string_view path) {
    auto v = Scalar(e, path, "a field name");
    if (!v.ok()) return v.status();
    if (!IsFieldName(*v)) {
      return Error(ValueMark(e), path,
                   absl::StrCat("'", v->substr(0, 64),
                                "' is not a field name ([a-z_][a-z0-9_]*, at most 64 characters)"));
    }
    return v;
  }

  absl::StatusOr<LayerSpec> ParseLayer(const YAML::Node& node, const std::string& path,
                                       const YAML::Mark& layers_mark) {
    LayerSpec l;
    auto entries = Entries(node, path,
                           {"name", "key", "capacity", "rate", "shadow", "max_buckets", "on_limit"},
                           &layers_mark);
    if (!entries.ok()) return entries.status();
    for (std::string_view required : {"name", "key", "capacity", "rate"}) {
      if (Require(*entries, node, path, required) == nullptr) return status_;
    }
    for (const Entry& e : *entries) {
      const std::string fpath = absl::StrCat(path, ".", e.key);
      absl::Status st;
      if (e.key == "name") {
        auto v = Scalar(e, fpath, "a name");
        if (v.ok()) l.name = *std::move(v);
        st = v.status();
      } else if (e.key == "key") {
        auto v = Scalar(e, fpath, "a key template");
        if (v.ok()) l.key_template = *std::move(v);
        st = v.status();
      } else if (e.key == "capacity") {
        auto v = Number(e, fpath, kMaxCapacity);
        if (v.ok()) l.params.capacity = *v;
        st = v.status();
      } else if (e.key == "rate") {
        auto v = Number(e, fpath, kMaxRate);
        if (v.ok()) l.params.rate = *v;
        st = v.status();
      } else if (e.key == "shadow") {
        auto v = Bool(e, fpath);
        if (v.ok()) l.shadow = *v;
        st = v.status();
      } else if (e.key == "max_buckets") {
        auto v = Count(e, fpath, kMaxMaxBuckets);
        if (v.ok()) l.max_buckets = static_cast<size_t>(*v);
        st = v.status();
      } else if (e.key == "on_limit") {
        auto v = Scalar(e, fpath, "deny or fail_open");
        if (v.ok()) {
          if (*v == "deny") {
            l.overflow = OverflowPolicy::kDeny;
          } else if (*v == "fail_open") {
            l.overflow = OverflowPolicy::kFailOpen;
          } else {
            st = Error(ValueMark(e), fpath,
                       absl::StrCat("expected deny or fail_open, got '", v->substr(0, 40), "'"));
          }
        } else {
          st = v.status();
        }
      }
      if (!st.ok()) return st;
    }
    return l;
  }

  absl::StatusOr<CostSpec> ParseCost(const Entry& ce, const std::string& path) {
    CostSpec c;
    const YAML::Mark key_mark = ce.key_mark;
    auto entries = Entries(ce.value, path, {"by", "values", "default"}, &key_mark);
    if (!entries.ok()) return entries.status();
    if (const Entry* by = Find(*entries, "by")) {
      auto v = Scalar(*by, path + ".by", "a request field name");
      if (!v.ok()) return v.status();
      c.by = *std::move(v);
    }
    if (const Entry* values = Find(*entries, "values")) {
      const std::string vpath = path + ".values";
      if (c.by.empty()) {
        return Error(values->key_mark, vpath,
                     "needs cost.by (the request field whose value selects the cost)");
      }
      const YAML::Mark vmark = values->key_mark;
      auto table = Entries(values->value, vpath, {}, &vmark);
      if (!table.ok()) return table.status();
      for (const Entry& e : *table) {
        auto v = Number(e, absl::StrCat(vpath, ".", e.key), kMaxCost);
        if (!v.ok()) return v.status();
        c.values.emplace_back(e.key, *v);
      }
    }
    if (const Entry* def = Find(*entries, "default")) {
      auto v = Number(*def, path + ".default", kMaxCost);
      if (!v.ok()) return v.status();
      c.default_cost = *v;
    }
    return c;
  }

  std::string_view source_;
  absl::Status status_;  // set by Require
};

absl::Status ErrnoStatus(int err, const std::string& path, std::string_view action) {
  const std::string msg = absl::StrCat(path, ": cannot ", AV(action), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

absl::StatusOr<std::string> ReadPolicyFile(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang; it is rejected below as not a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoStatus(errno, path, "open policy file");
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, path, "stat policy file");
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": policy file is not a regular file"));
  }
  if (st.st_size > kMaxFileBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": policy file is larger than ", kMaxFileBytes, " bytes"));
  }
  std::string text;
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, path, "read policy file");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > static_cast<size_t>(kMaxFileBytes)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": policy file is larger than ", kMaxFileBytes, " bytes"));
    }
  }
  return text;
}

std::string Msg(const absl::Status& st) { return std::string(st.message()); }

}  // namespace

absl::StatusOr<PolicyDocument> ParsePolicyDocument(std::string_view text, std::string_view source,
                                                   bool validate) {
  Parser parser(source);
  try {
    // Policy names are map keys, which Parse already rejects when repeated.
    return parser.Parse(text, validate);
  } catch (const YAML::Exception& e) {
    return parser.SyntaxError(e.mark, e.msg);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(AV(source), ": cannot parse policies: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(AV(source), ": cannot parse policies"));
  }
}

absl::StatusOr<std::vector<PolicySpec>> ParsePolicyYaml(std::string_view text,
                                                        std::string_view source) {
  auto doc = ParsePolicyDocument(text, source, /*validate=*/true);
  if (!doc.ok()) return doc.status();
  std::vector<PolicySpec> out;
  out.reserve(doc->policies.size());
  for (PolicyEntry& p : doc->policies) out.push_back(std::move(p.spec));
  return out;
}

absl::StatusOr<PolicyDocument> LoadPolicyDocument(const std::string& path, bool validate) {
  try {
    auto text = ReadPolicyFile(path);
    if (!text.ok()) return text.status();
    return ParsePolicyDocument(*text, path, validate);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(path, ": cannot load policies: ", e.what()));
  }
}

absl::StatusOr<std::vector<PolicySpec>> LoadPolicyFile(const std::string& path) {
  auto doc = LoadPolicyDocument(path, /*validate=*/true);
  if (!doc.ok()) return doc.status();
  std::vector<PolicySpec> out;
  out.reserve(doc->policies.size());
  for (PolicyEntry& p : doc->policies) out.push_back(std::move(p.spec));
  return out;
}

// ---- Watcher ----

PolicyFileWatcher::PolicyFileWatcher(std::string path, Installer install)
    : path_(std::move(path)), install_(std::move(install)) {}

PolicyFileWatcher::~PolicyFileWatcher() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    // An eventfd write of 1 cannot fail short of a bug; the loop also exits on POLLERR.
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

absl::Status PolicyFileWatcher::Start() {
  std::lock_guard<std::mutex> start_lock(start_mu_);
  if (thread_.joinable()) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": policy watcher already started"));
  }
  const size_t slash = path_.rfind('/');
  if (slash == std::string::npos) {
    dir_ = ".";
    base_ = path_;
  } else {
    dir_ = slash == 0 ? "/" : path_.substr(0, slash);
    base_ = path_.substr(slash + 1);
  }
  if (base_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": policy path names a directory"));
  }
  auto cleanup = [this] {
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
    inotify_fd_ = stop_fd_ = -1;
  };
  // Watch before the initial load, so a change made while it runs is not missed.
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) {
    absl::Status st = ErrnoStatus(errno, path_, "watch policy file (inotify_init1)");
    cleanup();
    return st;
  }
  if (::inotify_add_watch(inotify_fd_, dir_.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE) <
      0) {
    absl::Status st = ErrnoStatus(errno, dir_, "watch policy directory");
    cleanup();
    return st;
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) {
    absl::Status st = ErrnoStatus(errno, path_, "watch policy file (eventfd)");
    cleanup();
    return st;
  }
  if (absl::Status st = LoadAndInstall(/*only_if_changed=*/false); !st.ok()) {
    cleanup();
    return st;
  }
  try {
    thread_ = std::thread([this] { WatchLoop(); });
  } catch (const std::exception& e) {
    cleanup();
    return absl::ResourceExhaustedError(
        absl::StrCat(path_, ": cannot start policy watch thread: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status PolicyFileWatcher::Reload() { return LoadAndInstall(/*only_if_changed=*/false); }

uint64_t PolicyFileWatcher::reloads_ok() const { return ok_.load(std::memory_order_relaxed); }
uint64_t PolicyFileWatcher::reloads_failed() const {
  return failed_.load(std::memory_order_relaxed);
}
bool PolicyFileWatcher::last_reload_ok() const { return last_ok_.load(std::memory_order_relaxed); }
int64_t PolicyFileWatcher::last_reload_unix_ms() const {
  return last_unix_ms_.load(std::memory_order_relaxed);
}

absl::Status PolicyFileWatcher::LoadAndInstall(bool only_if_changed) {
  std::lock_guard<std::mutex> lock(load_mu_);
  auto stamp = [&](bool ok) {
    last_ok_.store(ok, std::memory_order_relaxed);
    last_unix_ms_.store(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count(),
                        std::memory_order_relaxed);
  };
  auto fail = [&](const absl::Status& st, std::string_view step) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    stamp(false);
    spdlog::error("policy file {}: {} failed, keeping the previous policies: {}", path_, step,
                  Msg(st));
    return st;
  };
  try {
    absl::StatusOr<std::string> text = ReadPolicyFile(path_);
    if (!text.ok()) {
      // A change notification while the file stays unreadable is not reported again.
      const bool repeat = only_if_changed && last_read_failed_;
      last_read_failed_ = true;
      last_text_.reset();
      if (repeat) return text.status();
      return fail(text.status(), "reading");
    }
    last_read_failed_ = false;
    if (only_if_changed && last_text_ == *text) return absl::OkStatus();
    last_text_ = *text;
    absl::StatusOr<std::vector<PolicySpec>> specs = ParsePolicyYaml(*text, path_);
    if (!specs.ok()) return fail(specs.status(), "parsing");
    const size_t n = specs->size();
    absl::Status st = install_(*std::move(specs));
    if (!st.ok()) return fail(st, "installing");
    ok_.fetch_add(1, std::memory_order_relaxed);
    stamp(true);
    spdlog::info("policy file {}: installed {} {}", path_, n, n == 1 ? "policy" : "policies");
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return fail(absl::InternalError(e.what()), "loading");
  } catch (...) {
    return fail(absl::InternalError("unknown exception"), "loading");
  }
}

void PolicyFileWatcher::WatchLoop() {
  using Clock = std::chrono::steady_clock;
  pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  bool pending = false;
  Clock::time_point due{};
  alignas(inotify_event) char buf[8192];
  while (true) {
    int timeout_ms = -1;
    if (pending) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - Clock::now());
      timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    const int r = ::poll(fds, 2, timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      spdlog::error("policy file {}: watch stopped: poll: {}", path_, std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;  // stop requested
    if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      spdlog::error("policy file {}: watch stopped (inotify error); SIGHUP still reloads", path_);
      fds[0].fd = -1;
    } else if (fds[0].revents & POLLIN) {
      while (true) {
        const ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
        if (n <= 0) break;  // EAGAIN: drained
        for (ssize_t off = 0; off < n;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
          const std::string_view name = ev->len > 0 ? std::string_view(ev->name) : "";
          // Our file changed, or something was renamed/created in the directory (a symlink swap,
          // as Kubernetes does with ConfigMaps, can change what our path points to). Events for
          // unrelated files only cost a read: unchanged content is ignored.
          if (name == base_ || (ev->mask & (IN_MOVED_TO | IN_CREATE | IN_Q_OVERFLOW)) != 0) {
            pending = true;
            due = Clock::now() + kDebounce;
          }
          if (ev->mask & IN_IGNORED) {
            spdlog::warn("policy file {}: directory {} is no longer watched; SIGHUP still reloads",
                         path_, dir_);
          }
        }
      }
    }
    if (pending && Clock::now() >= due) {
      pending = false;
      (void)LoadAndInstall(/*only_if_changed=*/true);
    }
  }
}

}  // namespace tollgate
