// The event loop: every connection's messages travel through its network model and reach the real
// PolicyEngine, in global time order, on a virtual clock.
//
// Cost model: the event queue holds one entry per connection that has a message in flight (not
// one per future message). Traffic is open loop, so a connection's sends are generated lazily, in
// send order, only as far as needed to know its next arrival: a send at time s cannot arrive before
// s, and delivery is in order, so once the next send is later than the earliest in-flight arrival,
// that arrival is final. Per decision the loop does one heap sift and no allocation of its own.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "sim/event_queue.h"
#include "sim/metrics.h"
#include "sim/network.h"
#include "sim/rng.h"
#include "sim/traffic.h"
#include "tollgate/limiter.h"
#include "tollgate/simulate.h"

namespace tollgate::sim {
namespace {

// RNG stream kinds (StreamSeed's second argument).
enum : uint64_t { kAssign = 1, kTraffic, kNet, kAttacker, kAttackerNet, kReplayNet };

struct Msg {
  int64_t arrive;
  uint32_t type;   // type id; for replay the row index
  uint32_t ident;  // spread attackers: which account/IP
};

// A FIFO of in-flight messages. Up to four live inside the connection (the common case: a message
// or two in flight), so reading the next one costs no pointer chase; a clump behind a stall spills
// into a vector that grows by doubling and is kept for reuse.
class Ring {
 public:
  bool empty() const { return size_ == 0; }
  const Msg& front() const { return buf()[head_]; }
  void pop() {
    head_ = (head_ + 1) & (cap() - 1);
    --size_;
  }
  void push(const Msg& m) {
    if (size_ == cap()) Grow();
    buf()[(head_ + size_) & (cap() - 1)] = m;
    ++size_;
  }

 private:
  static constexpr size_t kInline = 4;
  Msg* buf() { return big_.empty() ? inline_ : big_.data(); }
  const Msg* buf() const { return big_.empty() ? inline_ : big_.data(); }
  size_t cap() const { return big_.empty() ? kInline : big_.size(); }
  void Grow() {
    std::vector<Msg> next(cap() * 2);
    for (size_t i = 0; i < size_; ++i) next[i] = buf()[(head_ + i) & (cap() - 1)];
    big_ = std::move(next);
    head_ = 0;
  }
  Msg inline_[kInline];
  uint32_t head_ = 0, size_ = 0;
  std::vector<Msg> big_;
};

enum class Role : uint8_t { kLegit, kAttacker, kReplay };

struct Conn {
  Role role = Role::kLegit;
  uint32_t owner = 0;          // user index, attacker index, or replay user index
  uint32_t net = 0;            // network id
  uint32_t traffic_index = 0;  // legit: which entry of the scenario's traffic mix
  bool sample = false;         // the sample user: its decisions are recorded
  NetworkLink link;
  std::optional<TrafficSource> traffic;  // legit
  const std::vector<int32_t>* kind_types =
      nullptr;  // legit: message kind -> type id (-1: not sent)
  // Attackers: a constant-rate stream.
  int64_t next_send = kNever, gap = 0, end = kNever;
  uint32_t type = 0;
  uint64_t count = 0;
  // Replay: this user's rows.
  std::vector<uint32_t> rows;
  size_t row_pos = 0;
  Ring inflight;
  std::string user, ip;
  std::vector<std::string> derived;

  Conn(Role r, uint32_t o, uint32_t n, const NetworkModel* model, uint64_t seed)
      : role(r), owner(o), net(n), link(model, seed) {}
};

struct AttackerRun {
  AttackerSpec spec;
  uint32_t type = 0;
  // Spread attackers build their fields per request from these.
  std::string user_prefix, ip_prefix;
  std::vector<std::string> derived_prefix;
};

int64_t ToNs(double s) { return static_cast<int64_t>(std::llround(s * 1e9)); }

// Appends decimal `v` to a fixed buffer string without allocating once capacity is reached.
void SetNumbered(std::string* out, std::string_view prefix, uint64_t v) {
  out->assign(prefix);
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, end);
}

size_t PickWeighted(const std::vector<std::pair<std::string, double>>& mix, double u) {
  double total = 0;
  for (const auto& [n, w] : mix) total += w;
  double x = u * total;
  for (size_t i = 0; i < mix.size(); ++i) {
    if (x < mix[i].second) return i;
    x -= mix[i].second;
  }
  return mix.size() - 1;
}

// The virtual clock the engine reads: set to each event's time. Like testing::FakeClock, but not
// atomic (one simulation runs on one thread), so reading it costs a plain load.
class VirtualClock final : public Clock {
 public:
  SteadyTime SteadyNow() override { return SteadyTime(Duration(kEpochNs + now_ns_)); }
  WallTime WallNow() override {
    return WallTime(std::chrono::duration_cast<WallTime::duration>(Duration(kWallNs + now_ns_)));
  }
  void Set(int64_t now_ns) { now_ns_ = now_ns; }

 private:
  static constexpr int64_t kEpochNs = 1'000'000'000'000;                      // arbitrary, > 0
  static constexpr int64_t kWallNs = int64_t{1'767'225'600} * 1'000'000'000;  // 2026-01-01
  int64_t now_ns_ = 0;
};

bool IsGlobal(const LayerSpec& l) { return l.key_template.find('{') == std::string::npos; }

class Runner {
 public:
  Runner(const Scenario& sc, const PolicyEntry& policy, const RunOptions& opt)
      : sc_(sc), pe_(policy), spec_(policy.spec), opt_(opt), engine_({.clock = &clock_}) {}

  absl::StatusOr<nlohmann::json> Run() {
    if (absl::Status st = engine_.Install({spec_}); !st.ok()) return st;
    seed_ = opt_.seed.value_or(sc_.seed);
    duration_ns_ = (opt_.duration ? *opt_.duration : sc_.duration).count();
    users_ = opt_.users.value_or(sc_.users);
    for (const auto& [k, v] : spec_.cost.values) cost_table_[k] = v.nanos;
    if (absl::Status st = Setup(); !st.ok()) return st;

    const auto wall_start = std::chrono::steady_clock::now();
    if (absl::Status st = Loop(); !st.ok()) return st;
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();

    ResultHeader h;
    h.scenario = sc_.name.empty() ? sc_.source : sc_.name;
    h.description = sc_.description;
    h.policy_file = opt_.policy_file_label;
    h.policy = spec_.name;
    h.seed = seed_;
    h.duration_ns = duration_ns_;
    h.users = users_ + replay_users_;
    h.backend_capacity = sc_.backend_capacity;
    if (!h.backend_capacity && pe_.expect && pe_.expect->backend_ops_per_sec) {
      h.backend_capacity = static_cast<double>(pe_.expect->backend_ops_per_sec->nanos) / 1e9;
    }
    h.wall_seconds = wall;
    std::vector<LayerCounters> counters;
    for (LayerCounters& c : engine_.counters()) {
      if (c.policy == spec_.name) counters.push_back(std::move(c));
    }
    return BuildResult(h, m_, counters, spec_.layers);
  }

 private:
  uint32_t TypeId(const std::string& name) {
    auto [it, inserted] = type_ids_.try_emplace(name, static_cast<uint32_t>(m_.types.size()));
    if (inserted) m_.types.push_back(name);
    return it->second;
  }

  absl::StatusOr<uint32_t> NetId(const std::string& name) {
    for (uint32_t i = 0; i < m_.networks.size(); ++i) {
      if (m_.networks[i] == name) return i;
    }
    auto it = sc_.network_models.find(name);
    if (it == sc_.network_models.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown network model '", name, "'"));
    }
    models_.push_back(std::make_unique<NetworkModel>(it->second));
    m_.networks.push_back(name);
    return static_cast<uint32_t>(m_.networks.size() - 1);
  }

  // The cost the policy charges for a request of this type (for attackers' rates).
  uint64_t CostOfType(const std::string& type) const {
    if (spec_.cost.by == sc_.type_field) {
      if (auto it = cost_table_.find(type); it != cost_table_.end()) return it->second;
    }
    return spec_.cost.default_cost.nanos;
  }

  absl::Status Setup() {
    // Legitimate users.
    if (users_ > 0 && sc_.traffic_mix.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(sc_.source, ": users.traffic is needed when there are users"));
    }
    std::vector<const TrafficParams*> traffic;
    std::vector<std::vector<int32_t>> kind_types;
    for (const auto& [name, w] : sc_.traffic_mix) {
      const TrafficParams& p = sc_.traffic_models.at(name);
      traffic.push_back(&p);
      std::vector<int32_t> ids;
      for (const std::string& kind : TrafficKinds(p.kind)) {
        auto t = p.types.find(kind);
        const std::string type = t == p.types.end() ? kind : t->second;
        ids.push_back(type.empty() ? -1 : static_cast<int32_t>(TypeId(type)));
      }
      kind_types.push_back(std::move(ids));
    }
    kind_types_ = std::move(kind_types);
    std::vector<uint32_t> net_of_mix;
    for (const auto& [name, w] : sc_.network_mix) {
      auto id = NetId(name);
      if (!id.ok()) return id.status();
      net_of_mix.push_back(*id);
    }
    conns_.reserve(users_);
    m_.user_denied.assign(users_, 0);
    int64_t sample = -1;
    for (uint64_t i = 0; i < users_; ++i) {
      Rng r(StreamSeed(seed_, kAssign, i));
      const size_t t = PickWeighted(sc_.traffic_mix, r.Uniform());
      const size_t n = PickWeighted(sc_.network_mix, r.Uniform());
      const int64_t start = ToNs(r.Uniform(0, sc_.start_spread_s));
      const uint32_t net = net_of_mix[n];
      Conn& c = conns_.emplace_back(Role::kLegit, static_cast<uint32_t>(i), net, models_[net].get(),
                                    StreamSeed(seed_, kNet, i));
      c.traffic.emplace(traffic[t], StreamSeed(seed_, kTraffic, i), start);
      c.kind_types = &kind_types_[t];
      c.traffic_index = static_cast<uint32_t>(t);
      SetNumbered(&c.user, "u", i);
      SetNumbered(&c.ip, "ip", i / sc_.users_per_ip);
      for (const DerivedField& d : sc_.derived_fields) {
        SetNumbered(&c.derived.emplace_back(), d.prefix, i / d.users_per_value);
      }
      const std::string& nn = m_.networks[net];
      if (sample < 0 && nn != "ethernet" && nn != "direct") sample = static_cast<int64_t>(i);
    }
    if (users_ > 0) {
      if (sample < 0) sample = 0;
      Conn& s = conns_[static_cast<size_t>(sample)];
      s.sample = true;
      m_.sample_user = s.user;
      m_.sample_network = m_.networks[s.net];
      m_.sample_traffic = sc_.traffic_mix[s.traffic_index].first;
    }

    // Attackers.
    for (size_t a = 0; a < sc_.attackers.size(); ++a) {
      const AttackerSpec& spec = sc_.attackers[a];
      AttackerRun run{spec, TypeId(spec.type), spec.name + "-", spec.name + "-ip", {}};
      for (const DerivedField& d : sc_.derived_fields) {
        run.derived_prefix.push_back(absl::StrCat(d.prefix, spec.name, "-"));
      }
      if (run.spec.rate == 0) {  // a botnet at exactly its own limit
        std::optional<double> rate;
        for (const LayerSpec& l : spec_.layers) {
          if (l.shadow || IsGlobal(l)) continue;
          const double r =
              static_cast<double>(l.params.rate.nanos) / static_cast<double>(CostOfType(spec.type));
          if (!rate || r < *rate) rate = r;
        }
        if (!rate) {
          return absl::InvalidArgumentError(absl::StrCat(
              "attacker '", spec.name, "': rate: policy '", spec_.name,
              "' has no non-global enforced layer to derive a per-identity rate from; set rate"));
        }
        run.spec.rate = *rate;
      }
      auto net = NetId(spec.network);
      if (!net.ok()) return net.status();
      const int64_t start = ToNs(spec.start_s);
      const int64_t end = spec.duration_s ? start + ToNs(*spec.duration_s) : kNever;
      const int64_t gap = std::max<int64_t>(1, ToNs(1 / run.spec.rate));
      AttackerStats st;
      st.name = spec.name;
      st.kind = spec.kind;
      st.identities = spec.kind == AttackerKind::kFlooder ? 1 : spec.identities;
      st.start_s = spec.start_s;
      st.end_s = static_cast<double>(std::min(end, duration_ns_)) / 1e9;
      m_.attackers.push_back(st);
      const uint64_t conns = spec.kind == AttackerKind::kBotnet ? spec.identities : 1;
      for (uint64_t k = 0; k < conns; ++k) {
        const uint64_t id = (static_cast<uint64_t>(a) << 32) | k;
        Conn& c = conns_.emplace_back(Role::kAttacker, static_cast<uint32_t>(a), *net,
                                      models_[*net].get(), StreamSeed(seed_, kAttackerNet, id));
        Rng r(StreamSeed(seed_, kAttacker, id));
        // Botnet identities start at random phases within one interval.
        c.next_send = start + (spec.kind == AttackerKind::kBotnet
                                   ? static_cast<int64_t>(r.Uniform(0, static_cast<double>(gap)))
                                   : 0);
        c.gap = gap;
        c.end = end;
        c.type = run.type;
        if (c.next_send >= end) c.next_send = kNever;
        if (spec.kind == AttackerKind::kBotnet) {
          c.user = absl::StrCat(spec.name, "-", k);
          c.ip = absl::StrCat(spec.name, "-ip", k % spec.ips);
        } else {
          c.user = spec.name;
          c.ip = absl::StrCat(spec.name, "-ip0");
        }
        for (const DerivedField& d : sc_.derived_fields) {
          c.derived.push_back(absl::StrCat(d.prefix, spec.name, "-", k / d.users_per_value));
        }
      }
      attackers_.push_back(std::move(run));
    }

    // Replay: one connection per value of the user field.
    if (sc_.replay) {
      auto net = NetId(sc_.replay->network);
      if (!net.ok()) return net.status();
      absl::flat_hash_map<std::string, uint32_t> by_user;
      const auto& rows = sc_.replay->rows;
      replay_types_.resize(rows.size());
      for (uint32_t r = 0; r < rows.size(); ++r) {
        std::string user, type = "(none)";
        for (const auto& [k, v] : rows[r].fields) {
          if (k == sc_.user_field) user = v;
          if (k == sc_.type_field) type = v;
        }
        replay_types_[r] = TypeId(type);
        auto [it, inserted] = by_user.try_emplace(user, static_cast<uint32_t>(conns_.size()));
        if (inserted) {
          const uint32_t idx = static_cast<uint32_t>(replay_users_++);
          Conn& c = conns_.emplace_back(Role::kReplay, idx, *net, models_[*net].get(),
                                        StreamSeed(seed_, kReplayNet, idx));
          m_.user_denied.push_back(0);
          if (m_.sample_user.empty()) {  // no generated users: sample the first replayed one
            c.sample = true;
            m_.sample_user = user;
            m_.sample_network = sc_.replay->network;
            m_.sample_traffic = "replay";
          }
        }
        conns_[it->second].rows.push_back(r);
      }
    }
    if (conns_.size() >= EventQueue::kMaxConns) {
      return absl::InvalidArgumentError(
          absl::StrCat("too many connections (users + botnet identities): ", conns_.size(),
                       ", at most ", EventQueue::kMaxConns - 1));
    }
    m_.cells.assign(m_.types.size() * m_.networks.size(), {});
    m_.admitted_nanos.assign(static_cast<size_t>((duration_ns_ + m_.step_ns - 1) / m_.step_ns), 0);
    for (const LayerSpec& l : spec_.layers) m_.layer_names.push_back(l.name);
    m_.first_denier.assign(spec_.layers.size(), 0);
    return absl::OkStatus();
  }

  int64_t NextSend(const Conn& c) const {
    switch (c.role) {
      case Role::kLegit:
        return c.traffic->next();
      case Role::kAttacker:
        return c.next_send;
      case Role::kReplay:
        return c.row_pos < c.rows.size() ? ToNs(sc_.replay->rows[c.rows[c.row_pos]].t) : kNever;
    }
    return kNever;
  }

  void Send(Conn& c, int64_t t) {
    switch (c.role) {
      case Role::kLegit: {
        const int kind = c.traffic->Pop();
        const int32_t type = (*c.kind_types)[kind];
        if (type >= 0) c.inflight.push({c.link.Deliver(t), static_cast<uint32_t>(type), 0});
        return;
      }
      case Role::kAttacker: {
        c.inflight.push({c.link.Deliver(t), c.type, static_cast<uint32_t>(c.count++)});
        c.next_send = t + c.gap;
        if (c.next_send >= c.end) c.next_send = kNever;
        return;
      }
      case Role::kReplay:
        c.inflight.push({c.link.Deliver(t), c.rows[c.row_pos++], 0});
        return;
    }
  }

  // Generates sends until the connection's earliest in-flight arrival is final. Returns it, or
  // kNever if nothing more arrives within the run.
  int64_t Advance(Conn& c) {
    while (true) {
      const int64_t s = NextSend(c);
      if (s >= duration_ns_) break;  // cannot arrive within the run
      if (!c.inflight.empty() && s > c.inflight.front().arrive) break;
      Send(c, s);
    }
    if (c.inflight.empty()) return kNever;
    const int64_t a = c.inflight.front().arrive;
    return a < duration_ns_ ? a : kNever;
  }

  uint64_t CostNanos(std::span<const Field> fields) const {
    if (!spec_.cost.by.empty()) {
      for (const Field& f : fields) {
        if (f.first != spec_.cost.by) continue;
        if (auto it = cost_table_.find(AV(f.second)); it != cost_table_.end()) {
          return it->second;
        }
        break;
      }
    }
    return spec_.cost.default_cost.nanos;
  }

  absl::Status Decide(Conn& c, const Msg& msg, int64_t now) {
    size_t n = 0;
    std::optional<Decimal> cost;
    uint32_t type = msg.type;
    if (c.role == Role::kReplay) {
      const ReplayRow& row = sc_.replay->rows[msg.type];
      for (const auto& [k, v] : row.fields) fields_[n++] = {k, v};
      cost = row.cost;
      type = replay_types_[msg.type];
    } else {
      const std::string* user = &c.user;
      const std::string* ip = &c.ip;
      const std::vector<std::string>* derived = &c.derived;
      if (c.role == Role::kAttacker && attackers_[c.owner].spec.kind == AttackerKind::kSpread) {
        // Request n uses account n mod identities and IP n mod ips.
        const AttackerRun& a = attackers_[c.owner];
        const uint64_t account = msg.ident % a.spec.identities;
        SetNumbered(&spread_user_, a.user_prefix, account);
        SetNumbered(&spread_ip_, a.ip_prefix, msg.ident % a.spec.ips);
        spread_derived_.resize(sc_.derived_fields.size());
        for (size_t i = 0; i < spread_derived_.size(); ++i) {
          SetNumbered(&spread_derived_[i], a.derived_prefix[i],
                      account / sc_.derived_fields[i].users_per_value);
        }
        user = &spread_user_;
        ip = &spread_ip_;
        derived = &spread_derived_;
      }
      fields_[n++] = {sc_.user_field, *user};
      fields_[n++] = {sc_.ip_field, *ip};
      fields_[n++] = {sc_.type_field, m_.types[type]};
      for (size_t i = 0; i < derived->size() && n < fields_.size(); ++i) {
        fields_[n++] = {sc_.derived_fields[i].name, (*derived)[i]};
      }
    }
    const std::span<const Field> fields(fields_.data(), n);
    auto d = engine_.Check(spec_.name, fields, cost);
    if (!d.ok()) {
      std::string where = c.role == Role::kReplay
                              ? absl::StrCat(sc_.replay->file, ":", sc_.replay->rows[msg.type].line)
                              : absl::StrCat("scenario ", sc_.source);
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": the request does not fit policy '", spec_.name, "': ", d.status().message(),
          " (map the scenario's fields with fields:/derived_fields:)"));
    }
    ++m_.decisions;
    const uint64_t charged = cost ? cost->nanos : CostNanos(fields);
    if (d->allowed) {
      m_.admitted_nanos[static_cast<size_t>(now / m_.step_ns)] += charged;
    } else {
      ++m_.denied;
      if (d->denied_layer) {
        for (size_t i = 0; i < m_.layer_names.size(); ++i) {
          if (m_.layer_names[i] == *d->denied_layer) {
            ++m_.first_denier[i];
            break;
          }
        }
      }
    }
    switch (c.role) {
      case Role::kLegit:
      case Role::kReplay: {
        Metrics::Cell& cell = m_.cell(type, c.net);
        ++cell.sent;
        if (!d->allowed) {
          ++cell.denied;
          const size_t u = c.role == Role::kLegit ? c.owner : users_ + c.owner;
          m_.user_denied[u] = 1;
        }
        if (c.sample && m_.sample.size() < opt_.sample_points) {
          m_.sample.push_back({now, d->remaining, d->allowed});
        }
        break;
      }
      case Role::kAttacker: {
        AttackerStats& a = m_.attackers[c.owner];
        ++a.sent;
        if (d->allowed) {
          ++a.admitted;
          a.admitted_cost_nanos += charged;
        } else if (!a.first_deny_ns) {
          a.first_deny_ns = now;
        }
        break;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Loop() {
    EventQueue q;
    q.Reserve(conns_.size());
    for (uint32_t i = 0; i < conns_.size(); ++i) {
      const int64_t a = Advance(conns_[i]);
      if (a != kNever) q.Push(a, i);
    }
    int64_t now = 0;
    while (!q.empty()) {
      const EventQueue::Event e = q.top();
      if (e.time > now) {
        clock_.Set(e.time);
        now = e.time;
      }
      // The next event is most likely the top's best child: start loading its connection while
      // the engine works on this one (10k connections do not fit in cache).
      if (const EventQueue::Event* next = q.runner_up()) {
        const char* p = reinterpret_cast<const char*>(&conns_[next->conn()]);
        for (size_t off = 0; off < sizeof(Conn); off += 64) __builtin_prefetch(p + off);
      }
      Conn& c = conns_[e.conn()];
      const Msg msg = c.inflight.front();
      c.inflight.pop();
      if (absl::Status st = Decide(c, msg, now); !st.ok()) return st;
      const int64_t next = Advance(c);
      if (next == kNever) {
        q.Pop();
      } else {
        q.ReplaceTop(next, e.conn());
      }
    }
    return absl::OkStatus();
  }

  const Scenario& sc_;
  const PolicyEntry& pe_;
  const PolicySpec& spec_;
  const RunOptions& opt_;
  VirtualClock clock_;
  PolicyEngine engine_;
  uint64_t seed_ = 1, users_ = 0, replay_users_ = 0;
  int64_t duration_ns_ = 0;
  absl::flat_hash_map<std::string, uint64_t> cost_table_;
  absl::flat_hash_map<std::string, uint32_t> type_ids_;
  std::vector<std::unique_ptr<NetworkModel>> models_;
  std::vector<std::vector<int32_t>> kind_types_;
  std::vector<AttackerRun> attackers_;
  std::vector<uint32_t> replay_types_;
  std::vector<Conn> conns_;
  std::array<Field, 16> fields_;
  std::string spread_user_, spread_ip_;
  std::vector<std::string> spread_derived_;
  Metrics m_;
};

}  // namespace

absl::StatusOr<nlohmann::json> RunSimulation(const Scenario& scenario,
                                             const PolicyDocument& policies,
                                             const RunOptions& options) {
  try {
    const std::string& want = !options.policy.empty() ? options.policy : scenario.policy;
    const PolicyEntry* entry = nullptr;
    std::string names;
    for (const PolicyEntry& p : policies.policies) {
      absl::StrAppend(&names, names.empty() ? "" : ", ", p.spec.name);
      if (entry == nullptr && (want.empty() || p.spec.name == want)) entry = &p;
    }
    if (entry == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("--policy: '", want, "' is not a policy in ",
                                                     policies.source, " (policies: ", names, ")"));
    }
    if (!entry->validation.ok()) return entry->validation;
    if (scenario.derived_fields.size() > 13) {
      return absl::InvalidArgumentError("derived_fields: at most 13");
    }
    Runner runner(scenario, *entry, options);
    return runner.Run();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("simulation failed: ", e.what()));
  }
}

}  // namespace tollgate::sim
