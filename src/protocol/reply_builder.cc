#include "protocol/reply_builder.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

namespace tollgate::protocol {
namespace {

int NormalizeProtocol(int protocol) { return protocol == 3 ? 3 : 2; }

// Converts a size to the int64_t header value, saturating (sizes never get that large).
int64_t SizeToInt(size_t n) {
  constexpr size_t kMax = static_cast<size_t>(std::numeric_limits<int64_t>::max());
  return static_cast<int64_t>(n > kMax ? kMax : n);
}

// Writes the RESP text of `d` into buf (at least 32 bytes) and returns its length.
size_t FormatDouble(double d, char* buf, size_t cap) {
  if (std::isnan(d)) {
    buf[0] = 'n';
    buf[1] = 'a';
    buf[2] = 'n';
    return 3;
  }
  if (std::isinf(d)) {
    if (d < 0) {
      buf[0] = '-';
      buf[1] = 'i';
      buf[2] = 'n';
      buf[3] = 'f';
      return 4;
    }
    buf[0] = 'i';
    buf[1] = 'n';
    buf[2] = 'f';
    return 3;
  }
  const std::to_chars_result r = std::to_chars(buf, buf + cap, d);
  return r.ec == std::errc() ? static_cast<size_t>(r.ptr - buf) : 0;
}

}  // namespace

ReplyBuilder::ReplyBuilder(std::string* out, int protocol)
    : out_(out), protocol_(NormalizeProtocol(protocol)) {}

void ReplyBuilder::set_protocol(int protocol) { protocol_ = NormalizeProtocol(protocol); }

void ReplyBuilder::SimpleString(std::string_view s) { AppendLine('+', s); }

void ReplyBuilder::Error(std::string_view msg) { AppendLine('-', msg); }

void ReplyBuilder::Integer(int64_t v) { AppendHeader(':', v); }

void ReplyBuilder::Bulk(std::string_view s) {
  AppendHeader('$', SizeToInt(s.size()));
  out_->append(s);
  out_->append("\r\n", 2);
}

void ReplyBuilder::Null() {
  if (protocol_ == 3) {
    out_->append("_\r\n", 3);
  } else {
    out_->append("$-1\r\n", 5);
  }
}

void ReplyBuilder::NullArray() {
  if (protocol_ == 3) {
    out_->append("_\r\n", 3);
  } else {
    out_->append("*-1\r\n", 5);
  }
}

void ReplyBuilder::ArrayHeader(size_t n) { AppendHeader('*', SizeToInt(n)); }

void ReplyBuilder::MapHeader(size_t pairs) {
  if (protocol_ == 3) {
    AppendHeader('%', SizeToInt(pairs));
  } else {
    AppendHeader('*', SizeToInt(pairs) > std::numeric_limits<int64_t>::max() / 2
                          ? std::numeric_limits<int64_t>::max()
                          : 2 * SizeToInt(pairs));
  }
}

void ReplyBuilder::SetHeader(size_t n) { AppendHeader(protocol_ == 3 ? '~' : '*', SizeToInt(n)); }

void ReplyBuilder::Boolean(bool b) {
  if (protocol_ == 3) {
    out_->append(b ? "#t\r\n" : "#f\r\n", 4);
  } else {
    out_->append(b ? ":1\r\n" : ":0\r\n", 4);
  }
}

void ReplyBuilder::Double(double d) {
  char buf[64];
  const size_t len = FormatDouble(d, buf, sizeof(buf));
  const std::string_view text(buf, len);
  if (protocol_ == 3) {
    out_->push_back(',');
    out_->append(text);
    out_->append("\r\n", 2);
  } else {
    Bulk(text);
  }
}

void ReplyBuilder::Verbatim(std::string_view s) {
  if (protocol_ != 3) {
    Bulk(s);
    return;
  }
  AppendHeader('=', SizeToInt(s.size() + 4));
  out_->append("txt:", 4);
  out_->append(s);
  out_->append("\r\n", 2);
}

void ReplyBuilder::AppendHeader(char prefix, int64_t v) {
  char buf[24];  // prefix + up to 20 chars of int64 + "\r\n"
  buf[0] = prefix;
  char* end = std::to_chars(buf + 1, buf + sizeof(buf) - 2, v).ptr;
  end[0] = '\r';
  end[1] = '\n';
  out_->append(buf, static_cast<size_t>(end + 2 - buf));
}

void ReplyBuilder::AppendLine(char prefix, std::string_view s) {
  const size_t start = out_->size() + 1;
  out_->push_back(prefix);
  out_->append(s);
  for (size_t i = start; i < out_->size(); ++i) {
    char& c = (*out_)[i];
    if (c == '\r' || c == '\n') c = ' ';
  }
  out_->append("\r\n", 2);
}

}  // namespace tollgate::protocol
