// Encodes server replies in RESP2 or RESP3 into a caller-owned string.

#ifndef TOLLGATE_PROTOCOL_REPLY_BUILDER_H_
#define TOLLGATE_PROTOCOL_REPLY_BUILDER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tollgate::protocol {

// Appends RESP-encoded replies to `*out`. Knows RESP2 (default) and RESP3 (after HELLO 3).
// Never clears or shrinks `*out`; only appends. Aggregate headers (ArrayHeader, MapHeader,
// SetHeader) must be followed by exactly the announced number of elements; the builder does not
// track nesting.
class ReplyBuilder {
 public:
  // `out` must be non-null and outlive the builder. `protocol` is 2 or 3 (anything other than 3
  // is treated as 2).
  explicit ReplyBuilder(std::string* out, int protocol = 2);

  // Switches the encoding for subsequent replies. `protocol` is 2 or 3 (anything other than 3 is
  // treated as 2).
  void set_protocol(int protocol);
  // The protocol in effect: 2 or 3.
  int protocol() const { return protocol_; }

  // "+s\r\n"; each CR or LF inside `s` is replaced by a space.
  void SimpleString(std::string_view s);
  // "-msg\r\n"; `msg` already begins with its code, e.g. "ERR ...". CR/LF replaced by spaces.
  void Error(std::string_view msg);
  // ":v\r\n".
  void Integer(int64_t v);
  // "$<len>\r\n<s>\r\n"; binary safe.
  void Bulk(std::string_view s);
  // RESP2 "$-1\r\n", RESP3 "_\r\n".
  void Null();
  // RESP2 "*-1\r\n", RESP3 "_\r\n".
  void NullArray();
  // "*n\r\n"; followed by n elements.
  void ArrayHeader(size_t n);
  // RESP3 "%pairs\r\n"; RESP2 "*<2*pairs>\r\n" (flat field/value array). Followed by 2*pairs
  // elements (field, value, field, value, ...).
  void MapHeader(size_t pairs);
  // RESP3 "~n\r\n"; RESP2 "*n\r\n". Followed by n elements.
  void SetHeader(size_t n);
  // RESP3 "#t\r\n" / "#f\r\n"; RESP2 ":1\r\n" / ":0\r\n".
  void Boolean(bool b);
  // RESP3 ",<d>\r\n"; RESP2 the same text as a bulk string. The text is the shortest decimal
  // that round-trips (std::to_chars), e.g. "1.5", "3", "1e+100"; infinities are "inf" / "-inf"
  // and NaN is "nan".
  void Double(double d);
  // RESP3 "=<len+4>\r\ntxt:<s>\r\n"; RESP2 a bulk string of `s`.
  void Verbatim(std::string_view s);

 private:
  // Appends "<prefix><v>\r\n".
  void AppendHeader(char prefix, int64_t v);
  // Appends "<prefix><s>\r\n" with CR/LF in `s` replaced by spaces.
  void AppendLine(char prefix, std::string_view s);

  std::string* out_;
  int protocol_;
};

}  // namespace tollgate::protocol

#endif  // TOLLGATE_PROTOCOL_REPLY_BUILDER_H_
