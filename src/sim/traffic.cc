#include "sim/traffic.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tollgate::sim {
namespace {

// Message kinds per model, in index order.
enum ChatKind { kText, kCodePaste, kCursor, kHistory };
enum GamingKind { kInput, kAbility };
enum StreamingKind { kSegment, kHeartbeat, kSeek, kQuality };

}  // namespace

std::span<const ParamDesc<TrafficParams>> TrafficParamTable() {
  using P = TrafficParams;
  static const ParamDesc<P> kTable[] = {
      {"message_mean_s", &P::message_mean_s, 0.01, 86400},
      {"message_sigma", &P::message_sigma, 0, 3},
      {"paste_share", &P::paste_share, 0, 1},
      {"paste_burst", &P::paste_burst, 1, 1000, true},
      {"paste_gap_ms", &P::paste_gap_ms, 0, 60000},
      {"typing_s", &P::typing_s, 0, 3600},
      {"cursor_rate", &P::cursor_rate, 0, 1000},
      {"channel_switch_mean_s", &P::channel_switch_mean_s, 0.1, 1e6},
      {"history_messages", &P::history_messages, 0, 1000, true},
      {"tick_rate", &P::tick_rate, 0, 1000},
      {"combos_per_min", &P::combos_per_min, 0, 6000},
      {"combo_size", &P::combo_size, 1, 1000, true},
      {"combo_gap_ms", &P::combo_gap_ms, 0, 60000},
      {"fill_segments", &P::fill_segments, 0, 1000, true},
      {"fill_rate", &P::fill_rate, 0.001, 1000},
      {"segment_s", &P::segment_s, 0.001, 3600},
      {"heartbeat_s", &P::heartbeat_s, 0, 86400},
      {"seeks_per_min", &P::seeks_per_min, 0, 6000},
      {"quality_per_min", &P::quality_per_min, 0, 6000},
  };
  return kTable;
}

absl::Status ValidateTraffic(const TrafficParams& p) {
  if (absl::Status st = CheckParams(TrafficParamTable(), p); !st.ok()) return st;
  const std::vector<std::string> kinds = TrafficKinds(p.kind);
  for (const auto& [k, v] : p.types) {
    if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) {
      std::string all;
      for (const std::string& x : kinds) absl::StrAppend(&all, all.empty() ? "" : ", ", x);
      return absl::InvalidArgumentError(
          absl::StrCat("types: '", k, "' is not a message kind of the ", TrafficKindName(p.kind),
                       " model (", all, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TrafficKind> ParseTrafficKind(std::string_view name) {
  if (name == "chat") return TrafficKind::kChat;
  if (name == "gaming") return TrafficKind::kGaming;
  if (name == "streaming") return TrafficKind::kStreaming;
  return absl::InvalidArgumentError(absl::StrCat("unknown traffic model '", std::string(name),
                                                 "' (built-in: chat, gaming, streaming)"));
}

const char* TrafficKindName(TrafficKind kind) {
  switch (kind) {
    case TrafficKind::kChat:
      return "chat";
    case TrafficKind::kGaming:
      return "gaming";
    case TrafficKind::kStreaming:
      return "streaming";
  }
  return "?";
}

absl::StatusOr<TrafficParams> BuiltinTraffic(std::string_view name) {
  auto kind = ParseTrafficKind(name);
  if (!kind.ok()) return absl::NotFoundError(kind.status().message());
  TrafficParams p;
  p.kind = *kind;
  return p;
}

std::vector<std::string> TrafficKinds(TrafficKind kind) {
  switch (kind) {
    case TrafficKind::kChat:
      return {"text", "code_paste", "cursor", "history"};
    case TrafficKind::kGaming:
      return {"input", "ability"};
    case TrafficKind::kStreaming:
      return {"segment", "heartbeat", "seek", "quality"};
  }
  return {};
}

TrafficSource::TrafficSource(const TrafficParams* p, uint64_t seed, int64_t start_ns)
    : p_(p), rng_(seed) {
  switch (p->kind) {
    case TrafficKind::kChat: {
      PlanChatBlock(start_ns);
      // Entering a channel loads its history.
      if (p->history_messages > 0) {
        s_[1] = {start_ns, 0, static_cast<uint32_t>(p->history_messages), kHistory};
      }
      break;
    }
    case TrafficKind::kGaming: {
      if (p->tick_rate > 0) s_[0] = {start_ns, Ns(1 / p->tick_rate), kForever, kInput};
      if (p->combos_per_min > 0) Replan(1, start_ns);
      break;
    }
    case TrafficKind::kStreaming: {
      if (p->fill_segments > 0) {
        s_[0] = {start_ns, Ns(1 / p->fill_rate), static_cast<uint32_t>(p->fill_segments), kSegment};
      } else {
        s_[0] = {start_ns, Ns(p->segment_s), kForever, kSegment, 1};
      }
      if (p->heartbeat_s > 0) {
        s_[1] = {start_ns + Ns(p->heartbeat_s), Ns(p->heartbeat_s), kForever, kHeartbeat};
      }
      if (p->seeks_per_min + p->quality_per_min > 0) Replan(2, start_ns);
      break;
    }
  }
  UpdateNext();
}

void TrafficSource::PlanChatBlock(int64_t from) {
  Stream& s = s_[0];
  const double gap_s = rng_.LogNormal(p_->message_mean_s, p_->message_sigma);
  const int64_t t = from + std::max<int64_t>(Ns(gap_s), 1);
  s.paste = rng_.Bernoulli(p_->paste_share);
  const uint32_t cursors =
      static_cast<uint32_t>(std::floor(std::min(p_->typing_s, gap_s) * p_->cursor_rate));
  s.anchor = t;
  if (cursors > 0) {  // typing: cursor updates during the last typing_s before the message
    s.phase = 1;
    s.gap = Ns(1 / p_->cursor_rate);
    s.next = std::max(from, t - static_cast<int64_t>(cursors) * s.gap);
    s.remaining = cursors;
    s.kind = kCursor;
  } else {
    StartChatMessage();
  }
}

void TrafficSource::StartChatMessage() {
  Stream& s = s_[0];
  s.phase = 2;
  s.next = s.anchor;
  if (s.paste) {
    s.remaining = static_cast<uint32_t>(p_->paste_burst);
    s.gap = Ns(p_->paste_gap_ms / 1000);
    s.kind = kCodePaste;
  } else {
    s.remaining = 1;
    s.gap = 0;
    s.kind = kText;
  }
}

void TrafficSource::Replan(int i, int64_t t) {
  Stream& s = s_[i];
  switch (p_->kind) {
    case TrafficKind::kChat:
      if (i == 0) {
        if (s.phase == 1) {
          StartChatMessage();
        } else {
          PlanChatBlock(t);
        }
      } else {  // the next channel entry
        s.next = t + std::max<int64_t>(Ns(rng_.Exponential(p_->channel_switch_mean_s)), 1);
        s.remaining = static_cast<uint32_t>(p_->history_messages);
        s.gap = 0;
      }
      return;
    case TrafficKind::kGaming:  // i == 1: the next combo
      s.next = t + std::max<int64_t>(Ns(rng_.Exponential(60 / p_->combos_per_min)), 1);
      s.remaining = static_cast<uint32_t>(p_->combo_size);
      s.gap = Ns(p_->combo_gap_ms / 1000);
      s.kind = kAbility;
      return;
    case TrafficKind::kStreaming:
      if (i == 0) {  // buffer full: steady bitrate
        s.next = t + Ns(p_->segment_s);
        s.gap = Ns(p_->segment_s);
        s.remaining = kForever;
        s.phase = 1;
      } else {  // i == 2: the next seek or quality switch
        const double per_min = p_->seeks_per_min + p_->quality_per_min;
        s.next = t + std::max<int64_t>(Ns(rng_.Exponential(60 / per_min)), 1);
        s.kind = rng_.Bernoulli(p_->seeks_per_min / per_min) ? kSeek : kQuality;
        s.remaining = 1;
        s.gap = 0;
      }
      return;
  }
}

void TrafficSource::UpdateNext() { next_ = std::min({s_[0].next, s_[1].next, s_[2].next}); }

int TrafficSource::Pop() {
  int i = 0;
  for (int j = 1; j < 3; ++j) {
    if (s_[j].next < s_[i].next) i = j;
  }
  Stream& s = s_[i];
  const int64_t t = s.next;
  const int kind = s.kind;
  if (s.remaining != kForever) --s.remaining;
  if (s.remaining == 0) {
    s.next = kNever;
    Replan(i, t);
  } else {
    s.next = t + s.gap;
  }
  // A seek restarts the buffer fill.
  if (p_->kind == TrafficKind::kStreaming && kind == kSeek && p_->fill_segments > 0) {
    s_[0] = {t, Ns(1 / p_->fill_rate), static_cast<uint32_t>(p_->fill_segments), kSegment};
  }
  UpdateNext();
  return kind;
}

}  // namespace tollgate::sim
