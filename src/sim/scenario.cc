// Scenario YAML (docs/simulate.md) and the built-in scenarios embedded from examples/scenarios/.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "config/yaml_document.h"
#include "core/absl_compat.h"
#include "sim/builtin_scenarios.h"
#include "sim/network.h"
#include "sim/traffic.h"
#include "tollgate/limiter.h"
#include "tollgate/simulate.h"
#include "yaml-cpp/yaml.h"

namespace tollgate::sim {
namespace {

constexpr uint64_t kMaxUsers = 10'000'000;
constexpr uint64_t kMaxIdentities = 10'000'000;

// Thrown inside the parser only; ParseScenarioYaml turns it into the returned status.
struct ParseFailure {
  absl::Status status;
};

class Parser {
 public:
  Parser(std::string_view source, std::string_view base_dir)
      : source_(source), base_dir_(base_dir) {}

  [[noreturn]] void Fail(const YAML::Mark& mark, std::string_view path,
                         std::string_view what) const {
    std::string loc(source_);
    if (!mark.is_null() && mark.line >= 0 && mark.column >= 0) {
      absl::StrAppend(&loc, ":", mark.line + 1, ":", mark.column + 1);
    }
    throw ParseFailure{absl::InvalidArgumentError(
        path.empty() ? absl::StrCat(loc, ": ", AV(what))
                     : absl::StrCat(loc, ": ", AV(path), ": ", AV(what)))};
  }

  Scenario Parse(std::string_view text) {
    const config::YamlDocument doc = config::LoadFirstYamlDocument(text);
    if (doc.root.IsNull()) Fail(YAML::Mark::null_mark(), "", "the file is empty");
    if (doc.next) Fail(*doc.next, "", "only one YAML document is allowed");
    Scenario sc;
    sc.source = std::string(source_);
    for (const std::string& n : BuiltinNetworkNames()) sc.network_models[n] = *BuiltinNetwork(n);
    for (const char* n : {"chat", "gaming", "streaming"}) sc.traffic_models[n] = *BuiltinTraffic(n);
    const YAML::Node root = doc.root;
    std::vector<Entry> users_section;
    const YAML::Node* attackers = nullptr;
    YAML::Node attackers_node, replay_node, users_node, derived_node;
    YAML::Mark users_mark, attackers_mark;
    bool have_users = false;
    for (const Entry& e : Entries(root, "",
                                  {"name", "description", "policy", "seed", "duration",
                                   "backend_capacity", "fields", "derived_fields", "users",
                                   "traffic_models", "network_models", "attackers", "replay"})) {
      const std::string& k = e.key;
      if (k == "name") {
        sc.name = Str(e, k);
      } else if (k == "description") {
        sc.description = Str(e, k);
      } else if (k == "policy") {
        sc.policy = Str(e, k);
      } else if (k == "seed") {
        sc.seed = static_cast<uint64_t>(Int(e, k, 0, 1e18));
      } else if (k == "duration") {
        sc.duration = DurationValue(e, k);
      } else if (k == "backend_capacity") {
        sc.backend_capacity = Num(e, k, 1e-9, 1e12);
      } else if (k == "fields") {
        for (const Entry& f : Entries(e.value, k, {"user", "ip", "type"}, &e.key_mark)) {
          const std::string path = k + "." + f.key;
          std::string v = FieldName(f, path);
          (f.key == "user" ? sc.user_field : f.key == "ip" ? sc.ip_field : sc.type_field) = v;
        }
      } else if (k == "derived_fields") {
        derived_node = e.value;
        ParseDerived(e, &sc);
      } else if (k == "users") {
        users_node = e.value;
        users_mark = e.key_mark;
        have_users = true;
      } else if (k == "traffic_models") {
        for (const Entry& m : Entries(e.value, k, {}, &e.key_mark)) ParseTrafficModel(m, &sc);
      } else if (k == "network_models") {
        for (const Entry& m : Entries(e.value, k, {}, &e.key_mark)) ParseNetworkModel(m, &sc);
      } else if (k == "attackers") {
        attackers_node = e.value;
        attackers_mark = e.key_mark;
        attackers = &attackers_node;
      } else if (k == "replay") {
        ParseReplay(e, &sc);
      }
    }
    // Sections that refer to models are read after every model is known.
    if (have_users) ParseUsers(Entry{"users", users_mark, users_node}, &sc);
    if (attackers != nullptr) ParseAttackers(Entry{"attackers", attackers_mark, *attackers}, &sc);
    if (sc.users == 0 && sc.attackers.empty() && !sc.replay) {
      Fail(root.Mark(), "", "the scenario sends nothing: give users, attackers or replay");
    }
    for (const DerivedField& d : sc.derived_fields) {
      if (d.name == sc.user_field || d.name == sc.ip_field || d.name == sc.type_field) {
        Fail(derived_node.Mark(), "derived_fields",
             absl::StrCat("'", d.name, "' is already the user, ip or type field"));
      }
    }
    return sc;
  }

 private:
  struct Entry {
    std::string key;
    YAML::Mark key_mark;
    YAML::Node value;
  };

  static YAML::Mark ValueMark(const Entry& e) {
    const YAML::Mark m = e.value.Mark();
    return m.is_null() || e.value.IsNull() ? e.key_mark : m;
  }

  std::vector<Entry> Entries(const YAML::Node& map, std::string_view path,
                             std::initializer_list<std::string_view> allowed,
                             const YAML::Mark* fallback = nullptr) {
    return EntriesOf(map, path, std::vector<std::string_view>(allowed), fallback);
  }

  std::vector<Entry> EntriesOf(const YAML::Node& map, std::string_view path,
                               const std::vector<std::string_view>& allowed,
                               const YAML::Mark* fallback) {
    if (!map.IsMap()) {
      const YAML::Mark m =
          (map.Mark().is_null() || map.IsNull()) && fallback != nullptr ? *fallback : map.Mark();
      Fail(m, path, "expected a map");
    }
    std::vector<Entry> out;
    std::set<std::string> seen;
    for (const std::pair<YAML::Node, YAML::Node>& kv : map) {
      const YAML::Node& k = kv.first;
      if (!k.IsScalar()) Fail(k.Mark(), path, "a key must be a single value");
      const std::string key = k.Scalar();
      const std::string key_path = path.empty() ? key : absl::StrCat(AV(path), ".", key);
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string all;
        for (std::string_view a : allowed) absl::StrAppend(&all, all.empty() ? "" : ", ", AV(a));
        Fail(k.Mark(), key_path, absl::StrCat("unknown key (expected one of: ", all, ")"));
      }
      if (!seen.insert(key).second) Fail(k.Mark(), key_path, "duplicate key");
      out.push_back(Entry{key, k.Mark(), kv.second});
    }
    return out;
  }

  std::string Str(const Entry& e, std::string_view path) {
    if (!e.value.IsScalar()) Fail(ValueMark(e), path, "expected a single value");
    return e.value.Scalar();
  }

  double Num(const Entry& e, std::string_view path, double lo, double hi) {
    const std::string s = Str(e, path);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v < lo || v > hi) {
      Fail(ValueMark(e), path,
           absl::StrCat("expected a number in [", lo, ", ", hi, "], got '", s.substr(0, 64), "'"));
    }
    return v;
  }

  double Int(const Entry& e, std::string_view path, double lo, double hi) {
    const double v = Num(e, path, lo, hi);
    if (v != std::floor(v)) {
      Fail(ValueMark(e), path, absl::StrCat("expected a whole number, got ", v));
    }
    return v;
  }

  std::string FieldName(const Entry& e, std::string_view path) {
    std::string v = Str(e, path);
    if (!IsFieldName(v)) {
      Fail(ValueMark(e), path,
           absl::StrCat("'", v.substr(0, 64), "' is not a field name ([a-z_][a-z0-9_]*)"));
    }
    return v;
  }

  Duration DurationValue(const Entry& e, std::string_view path) {
    const std::string s = Str(e, path);
    auto d = ParseSimDuration(s);
    if (!d.ok()) Fail(ValueMark(e), path, SV(d.status().message()));
    return *d;
  }

  // name -> weight maps (`traffic: { chat: 0.7, gaming: 0.3 }`); a single name means weight 1.
  template <class Map>
  std::vector<std::pair<std::string, double>> Mix(const Entry& e, const std::string& path,
                                                  const Map& known, std::string_view what) {
    std::vector<std::pair<std::string, double>> out;
    auto check = [&](const std::string& name, const YAML::Mark& m) {
      if (!known.contains(name)) {
        std::string all;
        for (const auto& [n, unused] : known) absl::StrAppend(&all, all.empty() ? "" : ", ", n);
        Fail(m, path, absl::StrCat("unknown ", AV(what), " model '", name, "' (known: ", all, ")"));
      }
    };
    if (e.value.IsScalar()) {
      check(e.value.Scalar(), e.value.Mark());
      out.emplace_back(e.value.Scalar(), 1.0);
      return out;
    }
    double total = 0;
    for (const Entry& m : Entries(e.value, path, {}, &e.key_mark)) {
      check(m.key, m.key_mark);
      const double w = Num(m, path + "." + m.key, 0, 1e9);
      total += w;
      out.emplace_back(m.key, w);
    }
    if (out.empty() || total <= 0) Fail(ValueMark(e), path, "needs at least one positive weight");
    return out;
  }

  void ParseUsers(const Entry& ue, Scenario* sc) {
    bool have_traffic = false, have_network = false;
    for (const Entry& e :
         Entries(ue.value, "users", {"count", "per_ip", "start_spread_s", "traffic", "network"},
                 &ue.key_mark)) {
      const std::string path = "users." + e.key;
      if (e.key == "count") {
        sc->users = static_cast<uint64_t>(Int(e, path, 0, kMaxUsers));
      } else if (e.key == "per_ip") {
        sc->users_per_ip = static_cast<uint64_t>(Int(e, path, 1, kMaxUsers));
      } else if (e.key == "start_spread_s") {
        sc->start_spread_s = Num(e, path, 0, 86400);
      } else if (e.key == "traffic") {
        sc->traffic_mix = Mix(e, path, sc->traffic_models, "traffic");
        have_traffic = true;
      } else if (e.key == "network") {
        sc->network_mix = Mix(e, path, sc->network_models, "network");
        have_network = true;
      }
    }
    if (sc->users > 0 && !have_traffic)
      Fail(ue.key_mark, "users.traffic", "required key is missing");
    if (!have_network) sc->network_mix = {{"ethernet", 1.0}};
  }

  void ParseDerived(const Entry& de, Scenario* sc) {
    if (!de.value.IsSequence()) Fail(ValueMark(de), "derived_fields", "expected a list");
    for (size_t i = 0; i < de.value.size(); ++i) {
      const std::string path = absl::StrCat("derived_fields[", i, "]");
      const YAML::Node n = de.value[i];
      DerivedField d;
      bool have_name = false;
      for (const Entry& e : Entries(n, path, {"name", "prefix", "users_per_value"})) {
        if (e.key == "name") {
          d.name = FieldName(e, path + ".name");
          have_name = true;
        } else if (e.key == "prefix") {
          d.prefix = Str(e, path + ".prefix");
        } else {
          d.users_per_value =
              static_cast<uint64_t>(Int(e, path + ".users_per_value", 1, kMaxUsers));
        }
      }
      if (!have_name) Fail(n.Mark(), path + ".name", "required key is missing");
      sc->derived_fields.push_back(std::move(d));
    }
  }

  void ParseTrafficModel(const Entry& me, Scenario* sc) {
    const std::string path = "traffic_models." + me.key;
    std::vector<std::string_view> allowed = {"model", "types"};
    for (const auto& d : TrafficParamTable()) allowed.push_back(d.name);
    std::vector<Entry> entries = EntriesOf(me.value, path, allowed, &me.key_mark);
    TrafficParams p;
    auto builtin = BuiltinTraffic(me.key);
    const Entry* model = nullptr;
    for (const Entry& e : entries) {
      if (e.key == "model") model = &e;
    }
    if (model != nullptr) {
      auto kind = ParseTrafficKind(Str(*model, path + ".model"));
      if (!kind.ok()) Fail(ValueMark(*model), path + ".model", SV(kind.status().message()));
      p.kind = *kind;
    } else if (builtin.ok()) {
      p = *builtin;
    } else {
      Fail(me.key_mark, path,
           "a new traffic model needs 'model: chat|gaming|streaming' (or use a built-in name)");
    }
    for (const Entry& e : entries) {
      const std::string epath = path + "." + e.key;
      if (e.key == "model") continue;
      if (e.key == "types") {
        for (const Entry& t : Entries(e.value, epath, {}, &e.key_mark)) {
          std::string v = t.value.IsNull() ? "" : Str(t, epath + "." + t.key);
          p.types[t.key] = v;
        }
        continue;
      }
      for (const auto& d : TrafficParamTable()) {
        if (e.key == d.name) p.*(d.field) = Num(e, epath, -1e300, 1e300);
      }
    }
    if (absl::Status st = ValidateTraffic(p); !st.ok()) Fail(me.key_mark, path, SV(st.message()));
    sc->traffic_models[me.key] = p;
  }

  void ParseNetworkModel(const Entry& me, Scenario* sc) {
    const std::string path = "network_models." + me.key;
    std::vector<std::string_view> allowed = {"base"};
    for (const auto& d : NetworkParamTable()) allowed.push_back(d.name);
    std::vector<Entry> entries = EntriesOf(me.value, path, allowed, &me.key_mark);
    NetworkParams p;
    auto builtin = BuiltinNetwork(me.key);
    if (builtin.ok()) p = *builtin;
    for (const Entry& e : entries) {
      if (e.key != "base") continue;
      auto b = BuiltinNetwork(Str(e, path + ".base"));
      if (!b.ok()) Fail(ValueMark(e), path + ".base", SV(b.status().message()));
      p = *b;
    }
    for (const Entry& e : entries) {
      for (const auto& d : NetworkParamTable()) {
        if (e.key == d.name) p.*(d.field) = Num(e, path + "." + e.key, -1e300, 1e300);
      }
    }
    if (absl::Status st = ValidateNetwork(p); !st.ok()) Fail(me.key_mark, path, SV(st.message()));
    sc->network_models[me.key] = p;
  }

  void ParseAttackers(const Entry& ae, Scenario* sc) {
    if (!ae.value.IsSequence()) Fail(ValueMark(ae), "attackers", "expected a list");
    std::set<std::string> names;
    for (size_t i = 0; i < ae.value.size(); ++i) {
      const std::string path = absl::StrCat("attackers[", i, "]");
      const YAML::Node n = ae.value[i];
      AttackerSpec a;
      bool have_kind = false;
      for (const Entry& e : Entries(n, path,
                                    {"name", "kind", "rate", "identities", "ips", "start_s",
                                     "duration_s", "type", "network"})) {
        const std::string epath = path + "." + e.key;
        if (e.key == "name") {
          a.name = Str(e, epath);
          if (a.name.empty() || a.name.size() > 64)
            Fail(ValueMark(e), epath, "must be 1..64 bytes");
          if (!names.insert(a.name).second) Fail(ValueMark(e), epath, "duplicate attacker name");
        } else if (e.key == "kind") {
          const std::string k = Str(e, epath);
          have_kind = true;
          if (k == "flooder") {
            a.kind = AttackerKind::kFlooder;
          } else if (k == "botnet") {
            a.kind = AttackerKind::kBotnet;
          } else if (k == "spread") {
            a.kind = AttackerKind::kSpread;
          } else {
            Fail(ValueMark(e), epath,
                 absl::StrCat("unknown attacker kind '", k, "' (flooder, botnet, spread)"));
          }
        } else if (e.key == "rate") {
          a.rate = Str(e, epath) == "auto" ? 0 : Num(e, epath, 1e-6, 1e9);
        } else if (e.key == "identities") {
          a.identities = static_cast<uint64_t>(Int(e, epath, 1, kMaxIdentities));
        } else if (e.key == "ips") {
          a.ips = static_cast<uint64_t>(Int(e, epath, 1, kMaxIdentities));
        } else if (e.key == "start_s") {
          a.start_s = Num(e, epath, 0, 86400);
        } else if (e.key == "duration_s") {
          a.duration_s = Num(e, epath, 1e-3, 86400);
        } else if (e.key == "type") {
          a.type = Str(e, epath);
        } else if (e.key == "network") {
          a.network = Str(e, epath);
          if (!sc->network_models.contains(a.network)) {
            Fail(ValueMark(e), epath, absl::StrCat("unknown network model '", a.network, "'"));
          }
        }
      }
      if (a.name.empty()) Fail(n.Mark(), path + ".name", "required key is missing");
      if (!have_kind) Fail(n.Mark(), path + ".kind", "required key is missing");
      if (a.rate == 0 && a.kind != AttackerKind::kBotnet) {
        Fail(n.Mark(), path + ".rate", "required for a flooder or spread attacker");
      }
      if (a.kind == AttackerKind::kFlooder && (a.identities != 1 || a.ips != 1)) {
        Fail(n.Mark(), path, "a flooder is one identity behind one IP");
      }
      sc->attackers.push_back(std::move(a));
    }
  }

  void ParseReplay(const Entry& re, Scenario* sc) {
    ReplaySpec r;
    ReplayFormat format = ReplayFormat::kAuto;
    bool have_file = false;
    YAML::Mark file_mark;
    for (const Entry& e :
         Entries(re.value, "replay", {"file", "format", "network"}, &re.key_mark)) {
      const std::string epath = "replay." + e.key;
      if (e.key == "file") {
        r.file = Str(e, epath);
        file_mark = ValueMark(e);
        have_file = true;
      } else if (e.key == "format") {
        const std::string f = Str(e, epath);
        if (f == "auto") {
          format = ReplayFormat::kAuto;
        } else if (f == "jsonl") {
          format = ReplayFormat::kJsonLines;
        } else if (f == "csv") {
          format = ReplayFormat::kCsv;
        } else {
          Fail(ValueMark(e), epath, absl::StrCat("expected auto, jsonl or csv, got '", f, "'"));
        }
      } else {
        r.network = Str(e, epath);
        if (!sc->network_models.contains(r.network)) {
          Fail(ValueMark(e), epath, absl::StrCat("unknown network model '", r.network, "'"));
        }
      }
    }
    if (!have_file) Fail(re.key_mark, "replay.file", "required key is missing");
    auto text = ReadRelative(r.file);
    if (!text.ok()) Fail(file_mark, "replay.file", SV(text.status().message()));
    const std::string shown = DisplayPath(r.file);
    auto rows = ParseReplayLog(*text, shown, format);
    if (!rows.ok()) throw ParseFailure{rows.status()};
    r.rows = *std::move(rows);
    sc->replay = std::move(r);
  }

  std::string DisplayPath(const std::string& file) const {
    if (!file.empty() && file[0] == '/') return file;
    if (base_dir_.starts_with("builtin:")) return absl::StrCat(AV(base_dir_), file);
    return base_dir_.empty() ? file : absl::StrCat(AV(base_dir_), "/", file);
  }

  absl::StatusOr<std::string> ReadRelative(const std::string& file) const {
    if (base_dir_.starts_with("builtin:")) {
      for (const BuiltinFile& f : kBuiltinScenarioFiles) {
        if (f.name == file) return std::string(f.text);
      }
      return absl::NotFoundError(absl::StrCat("no built-in file '", file, "'"));
    }
    const std::string path = DisplayPath(file);
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string_view source_, base_dir_;
};

}  // namespace

absl::StatusOr<Duration> ParseSimDuration(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "duration must be like 90s, 10m, 1h or 1h30m (units ms, s, m, h), more than 0 and at most "
        "24h, got '",
        AV(text.substr(0, 64)), "'"));
  };
  if (text.empty()) return bad();
  double total_ns = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && ((text[j] >= '0' && text[j] <= '9') || text[j] == '.')) ++j;
    if (j == i) return bad();
    const std::string num(text.substr(i, j - i));
    char* end = nullptr;
    const double v = std::strtod(num.c_str(), &end);
    if (end != num.c_str() + num.size()) return bad();
    size_t k = j;
    while (k < text.size() && text[k] >= 'a' && text[k] <= 'z') ++k;
    const std::string_view unit = text.substr(j, k - j);
    double scale = 0;
    if (unit == "ms") {
      scale = 1e6;
    } else if (unit == "s" || (unit.empty() && i == 0 && k == text.size())) {
      scale = 1e9;  // a bare number is seconds
    } else if (unit == "m") {
      scale = 60e9;
    } else if (unit == "h") {
      scale = 3600e9;
    } else {
      return bad();
    }
    total_ns += v * scale;
    i = k;
  }
  if (!(total_ns >= 1e6) || total_ns > 86400e9) return bad();
  return Duration(static_cast<int64_t>(total_ns));
}

absl::StatusOr<Scenario> ParseScenarioYaml(std::string_view text, std::string_view source,
                                           std::string_view base_dir) {
  Parser parser(source, base_dir);
  try {
    return parser.Parse(text);
  } catch (const ParseFailure& f) {
    return f.status;
  } catch (const YAML::Exception& e) {
    std::string loc(source);
    if (!e.mark.is_null()) absl::StrAppend(&loc, ":", e.mark.line + 1, ":", e.mark.column + 1);
    return absl::InvalidArgumentError(absl::StrCat(loc, ": YAML syntax error: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(AV(source), ": cannot parse scenario: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(AV(source), ": cannot parse scenario"));
  }
}

std::vector<std::string> BuiltinScenarioNames() {
  std::vector<std::string> out;
  for (const BuiltinFile& f : kBuiltinScenarioFiles) {
    if (f.name.ends_with(".yaml")) out.emplace_back(f.name.substr(0, f.name.size() - 5));
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<Scenario> LoadScenario(const std::string& path_or_name) {
  try {
    for (const BuiltinFile& f : kBuiltinScenarioFiles) {
      if (f.name == path_or_name + ".yaml") {
        return ParseScenarioYaml(f.text, absl::StrCat("builtin:", AV(f.name)), "builtin:");
      }
    }
    std::ifstream in(path_or_name, std::ios::binary);
    if (!in) {
      std::string names;
      for (const std::string& n : BuiltinScenarioNames()) {
        absl::StrAppend(&names, names.empty() ? "" : ", ", n);
      }
      return absl::NotFoundError(absl::StrCat("--scenario: '", path_or_name,
                                              "' is neither a readable file nor a built-in "
                                              "scenario (built-in: ",
                                              names, ")"));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    const size_t slash = path_or_name.rfind('/');
    const std::string dir = slash == std::string::npos ? "" : path_or_name.substr(0, slash);
    return ParseScenarioYaml(ss.str(), path_or_name, dir);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("--scenario: ", e.what()));
  }
}

}  // namespace tollgate::sim
