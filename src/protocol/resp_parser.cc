#include "protocol/resp_parser.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

namespace tollgate::protocol {
namespace {

// Longest accepted "*<n>\r" / "$<len>\r" line, counting the type byte and the '\r'.
constexpr size_t kMaxHeaderLine = 64;
// A declared bulk length reserves at most this much before the data actually arrives.
constexpr size_t kReserveAhead = 64 * 1024;
// Argument vector capacity reserved from a declared multibulk count, at most.
constexpr size_t kMaxArgsReserve = 1024;
// Recycled argument buffers: how many, and how big each may be, to bound idle memory.
constexpr size_t kMaxSpare = 32;
constexpr size_t kMaxSpareCapacity = 4 * 1024;
// line_ buffers bigger than this are freed after use.
constexpr size_t kMaxRetainedLine = 16 * 1024;

constexpr char kInvalidMultibulk[] = "ERR Protocol error: invalid multibulk length";
constexpr char kTooBigMultibulk[] = "ERR Protocol error: too big mbulk count string";
constexpr char kInvalidBulk[] = "ERR Protocol error: invalid bulk length";
constexpr char kTooBigBulk[] = "ERR Protocol error: too big bulk count string";
constexpr char kTooLarge[] = "ERR Protocol error: request too large";
constexpr char kExpectedCrlf[] = "ERR Protocol error: expected CRLF after bulk";
constexpr char kTooBigInline[] = "ERR Protocol error: too big inline request";
constexpr char kTooManyInline[] = "ERR Protocol error: too many arguments in inline request";
constexpr char kUnbalanced[] = "ERR Protocol error: unbalanced quotes in request";

// Parses a decimal integer exactly like Redis's string2ll: optional '-', no '+', no spaces, no
// leading zeros ("0" alone is fine, "-0" is not), must fit in int64_t. Returns false otherwise.
bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  if (s.size() == 1 && s[0] == '0') {
    *out = 0;
    return true;
  }
  size_t i = 0;
  bool negative = false;
  if (s[0] == '-') {
    negative = true;
    i = 1;
    if (s.size() == 1) return false;
  }
  if (s[i] < '1' || s[i] > '9') return false;
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  constexpr uint64_t kMaxPos = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (negative) {
    if (v > kMaxPos + 1) return false;
    *out = v == kMaxPos + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(v);
  } else {
    if (v > kMaxPos) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

// isspace() in the C locale, as used by sdssplitargs to skip blanks and after closing quotes.
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Characters that end an unquoted inline token (sdssplitargs; NUL is an ordinary byte here).
bool EndsToken(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

}  // namespace

RequestParser::RequestParser(ParserLimits limits) : limits_(limits) {}

RequestParser::Result RequestParser::Parse(std::string_view input, size_t* consumed) {
  if (state_ == State::kError) {
    *consumed = 0;
    return Result::kError;
  }
  if (state_ == State::kDone) {
    BeginRequest();
    state_ = State::kStart;
  }
  const size_t size = input.size();
  size_t pos = 0;
  while (pos < size) {
    switch (state_) {
      case State::kStart:
        state_ = input[pos] == '*' ? State::kArrayHeader : State::kInline;
        break;

      case State::kArrayHeader: {
        std::string_view line;
        const LineStatus st = ReadLine(input, &pos, kMaxHeaderLine, &line);
        if (st == LineStatus::kIncomplete) break;
        if (st == LineStatus::kTooLong) return Fail(kTooBigMultibulk, pos, consumed);
        const bool ok = OnArrayHeader(line);
        ReleaseLine();
        if (!ok) return Fail(kInvalidMultibulk, pos, consumed);
        break;
      }

      case State::kBulkHeader: {
        if (line_.empty() && input[pos] != '$') {
          char got = input[pos];
          if (got == '\r' || got == '\n') got = ' ';
          std::string msg = "ERR Protocol error: expected '$', got '";
          msg.push_back(got);
          msg.push_back('\'');
          return Fail(std::move(msg), pos, consumed);
        }
        std::string_view line;
        const LineStatus st = ReadLine(input, &pos, kMaxHeaderLine, &line);
        if (st == LineStatus::kIncomplete) break;
        if (st == LineStatus::kTooLong) return Fail(kTooBigBulk, pos, consumed);
        const char* err = OnBulkHeader(line);
        ReleaseLine();
        if (err != nullptr) return Fail(err, pos, consumed);
        break;
      }

      case State::kBulkData: {
        const size_t take = std::min(bulk_remaining_, size - pos);
        std::string& arg = args_.back();
        const size_t need = arg.size() + take;
        if (need > arg.capacity()) {
          // Grow geometrically, but never beyond the declared length.
          arg.reserve(std::min(bulk_len_, std::max(need, 2 * arg.capacity())));
        }
        arg.append(input.data() + pos, take);
        pos += take;
        bulk_remaining_ -= take;
        if (bulk_remaining_ == 0) state_ = State::kBulkCR;
        break;
      }

      case State::kBulkCR:
        if (input[pos] != '\r') return Fail(kExpectedCrlf, pos, consumed);
        ++pos;
        state_ = State::kBulkLF;
        break;

      case State::kBulkLF:
        if (input[pos] != '\n') return Fail(kExpectedCrlf, pos, consumed);
        ++pos;
        if (args_.size() == args_expected_) {
          state_ = State::kDone;
          *consumed = pos;
          return Result::kOk;
        }
        state_ = State::kBulkHeader;
        break;

      case State::kInline: {
        // One extra byte so that a line of exactly max_inline_len bytes plus "\r" fits.
        const size_t max_raw = limits_.max_inline_len >= std::numeric_limits<size_t>::max() - 1
                                   ? std::numeric_limits<size_t>::max() - 1
                                   : limits_.max_inline_len + 1;
        std::string_view line;
        const LineStatus st = ReadLine(input, &pos, max_raw, &line);
        if (st == LineStatus::kIncomplete) break;
        if (st == LineStatus::kTooLong) return Fail(kTooBigInline, pos, consumed);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const char* err = line.size() > limits_.max_inline_len ? kTooBigInline : OnInlineLine(line);
        ReleaseLine();
        if (err != nullptr) return Fail(err, pos, consumed);
        if (args_.empty()) {  // blank line: skip silently
          request_bytes_ = 0;
          state_ = State::kStart;
          break;
        }
        state_ = State::kDone;
        *consumed = pos;
        return Result::kOk;
      }

      case State::kDone:
      case State::kError:
        // Unreachable: handled before the loop and by returning.
        return Fail("ERR Protocol error: internal parser state", pos, consumed);
    }
  }
  *consumed = size;
  return Result::kNeedMore;
}

RequestParser::LineStatus RequestParser::ReadLine(std::string_view input, size_t* pos,
                                                  size_t max_raw, std::string_view* line) {
  const char* start = input.data() + *pos;
  const size_t avail = input.size() - *pos;
  // Invariant: line_.size() <= max_raw, so a '\n' within `window` bytes keeps the line in bounds.
  const size_t window = max_raw - line_.size() + 1;
  const size_t scan = std::min(avail, window);
  const void* nl = scan == 0 ? nullptr : std::memchr(start, '\n', scan);
  if (nl != nullptr) {
    const size_t n = static_cast<size_t>(static_cast<const char*>(nl) - start);
    if (line_.empty()) {
      *line = std::string_view(start, n);
    } else {
      line_.append(start, n);
      *line = line_;
    }
    *pos += n + 1;
    return LineStatus::kComplete;
  }
  if (avail >= window) return LineStatus::kTooLong;
  line_.append(start, avail);
  *pos = input.size();
  return LineStatus::kIncomplete;
}

void RequestParser::ReleaseLine() {
  if (line_.capacity() > kMaxRetainedLine) {
    std::string().swap(line_);
  } else {
    line_.clear();
  }
}

void RequestParser::BeginRequest() {
  for (std::string& s : args_) {
    if (spare_.size() >= kMaxSpare) break;
    if (s.capacity() <= kMaxSpareCapacity) spare_.push_back(std::move(s));
  }
  args_.clear();
  args_expected_ = 0;
  request_bytes_ = 0;
}

std::string& RequestParser::NewArg() {
  if (spare_.empty()) return args_.emplace_back();
  std::string& s = args_.emplace_back(std::move(spare_.back()));
  spare_.pop_back();
  s.clear();
  return s;
}

bool RequestParser::OnArrayHeader(std::string_view line) {
  // line is "*<n>\r".
  if (line.size() < 3 || line.back() != '\r') return false;
  int64_t n = 0;
  if (!ParseInt(line.substr(1, line.size() - 2), &n)) return false;
  if (n <= 0) {  // empty request: skip silently
    state_ = State::kStart;
    return true;
  }
  if (static_cast<uint64_t>(n) > limits_.max_args) return false;
  args_expected_ = static_cast<size_t>(n);
  args_.reserve(std::min(args_expected_, kMaxArgsReserve));
  state_ = State::kBulkHeader;
  return true;
}

const char* RequestParser::OnBulkHeader(std::string_view line) {
  // line is "$<len>\r".
  if (line.size() < 3 || line.back() != '\r') return kInvalidBulk;
  int64_t len = 0;
  if (!ParseInt(line.substr(1, line.size() - 2), &len) || len < 0 ||
      static_cast<uint64_t>(len) > limits_.max_bulk_len) {
    return kInvalidBulk;
  }
  const size_t n = static_cast<size_t>(len);
  // request_bytes_ <= max_request_bytes always holds, so this cannot underflow.
  if (n > limits_.max_request_bytes - request_bytes_) return kTooLarge;
  request_bytes_ += n;
  std::string& arg = NewArg();
  arg.reserve(std::min(n, kReserveAhead));
  bulk_len_ = n;
  bulk_remaining_ = n;
  state_ = n == 0 ? State::kBulkCR : State::kBulkData;
  return nullptr;
}

const char* RequestParser::OnInlineLine(std::string_view line) {
  // Port of Redis's sdssplitargs(), except that NUL is an ordinary byte instead of an end mark.
  const size_t n = line.size();
  size_t i = 0;
  while (true) {
    while (i < n && IsSpace(line[i])) ++i;
    if (i == n) return nullptr;
    if (args_.size() >= limits_.max_args) return kTooManyInline;
    std::string& cur = NewArg();
    bool in_dq = false;  // inside "double quotes"
    bool in_sq = false;  // inside 'single quotes'
    bool done = false;
    while (!done) {
      if (in_dq) {
        if (i == n) return kUnbalanced;
        const char c = line[i];
        if (c == '\\' && i + 3 < n && line[i + 1] == 'x' && IsHex(line[i + 2]) &&
            IsHex(line[i + 3])) {
          cur.push_back(static_cast<char>(HexValue(line[i + 2]) * 16 + HexValue(line[i + 3])));
          i += 4;
        } else if (c == '\\' && i + 1 < n) {
          char e = line[i + 1];
          switch (e) {
            case 'n':
              e = '\n';
              break;
            case 'r':
              e = '\r';
              break;
            case 't':
              e = '\t';
              break;
            case 'b':
              e = '\b';
              break;
            case 'a':
              e = '\a';
              break;
            default:
              break;
          }
          cur.push_back(e);
          i += 2;
        } else if (c == '"') {
          // The closing quote must be followed by a space or the end of the line.
          if (i + 1 < n && !IsSpace(line[i + 1])) return kUnbalanced;
          done = true;
          ++i;
        } else {
          cur.push_back(c);
          ++i;
        }
      } else if (in_sq) {
        if (i == n) return kUnbalanced;
        const char c = line[i];
        if (c == '\\' && i + 1 < n && line[i + 1] == '\'') {
          cur.push_back('\'');
          i += 2;
        } else if (c == '\'') {
          if (i + 1 < n && !IsSpace(line[i + 1])) return kUnbalanced;
          done = true;
          ++i;
        } else {
          cur.push_back(c);
          ++i;
        }
      } else {
        // Unquoted: copy the run of ordinary bytes at once.
        size_t j = i;
        while (j < n && !EndsToken(line[j]) && line[j] != '"' && line[j] != '\'') ++j;
        cur.append(line.data() + i, j - i);
        i = j;
        if (i == n) {
          done = true;
        } else if (EndsToken(line[i])) {
          done = true;
          ++i;
        } else {
          if (line[i] == '"') {
            in_dq = true;
          } else {
            in_sq = true;
          }
          ++i;
        }
      }
    }
    if (cur.size() > limits_.max_bulk_len ||
        cur.size() > limits_.max_request_bytes - request_bytes_) {
      return kTooBigInline;
    }
    request_bytes_ += cur.size();
  }
}

RequestParser::Result RequestParser::Fail(std::string msg, size_t pos, size_t* consumed) {
  error_ = std::move(msg);
  state_ = State::kError;
  *consumed = pos;
  return Result::kError;
}

}  // namespace tollgate::protocol
