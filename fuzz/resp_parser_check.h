// Invariant checks for tollgate::protocol::RequestParser, shared by the libFuzzer target
// (fuzz/resp_parser_fuzz.cc) and the corpus regression test
// (src/protocol/resp_parser_corpus_test.cc). Header-only so both can include it without another
// library target.

#ifndef TOLLGATE_FUZZ_RESP_PARSER_CHECK_H_
#define TOLLGATE_FUZZ_RESP_PARSER_CHECK_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/resp_parser.h"

namespace tollgate::fuzz {

// What a parser produced for one byte stream: every kOk argument vector in order, and how the
// stream ended (an error message, or empty when it ended with kNeedMore).
struct ParseTrace {
  std::vector<std::vector<std::string>> requests;
  std::string error;
};

namespace internal {

// Decodes the configuration byte into limits: small values make the limits reachable.
inline protocol::ParserLimits LimitsFromByte(uint8_t b) {
  static constexpr size_t kArgs[] = {1, 2, 3, 1024};
  static constexpr size_t kBulk[] = {0, 3, 16, 8 * 1024 * 1024};
  static constexpr size_t kInline[] = {0, 4, 24, 64 * 1024};
  static constexpr size_t kRequest[] = {2, 9, 64, 32 * 1024 * 1024};
  protocol::ParserLimits limits;
  limits.max_args = kArgs[b & 3];
  limits.max_bulk_len = kBulk[(b >> 2) & 3];
  limits.max_inline_len = kInline[(b >> 4) & 3];
  limits.max_request_bytes = kRequest[(b >> 6) & 3];
  return limits;
}

// Deterministic pseudo-random chunk sizes in [1, 16].
inline size_t NextChunk(uint32_t* state) {
  *state = *state * 1103515245u + 12345u;
  return 1 + ((*state >> 16) % 16);
}

// Appends a description of a violated invariant to *failure (empty means all fine so far).
inline void Violation(std::string* failure, std::string_view what) {
  if (failure->empty()) failure->assign(what);
}

// Checks the per-result invariants after one Parse call.
inline void CheckResult(const protocol::RequestParser& parser,
                        protocol::RequestParser::Result result, size_t input_size, size_t consumed,
                        const protocol::ParserLimits& limits, std::string* failure) {
  using Result = protocol::RequestParser::Result;
  if (consumed > input_size) Violation(failure, "consumed > input size");
  if (result == Result::kNeedMore && consumed != input_size) {
    Violation(failure, "kNeedMore without consuming all input");
  }
  if (result == Result::kError && parser.error().empty()) {
    Violation(failure, "kError with empty error()");
  }
  if (result == Result::kError && parser.error().find_first_of("\r\n") != std::string::npos) {
    Violation(failure, "error() contains CR/LF");
  }
  if (result != Result::kOk) return;
  if (consumed == 0) Violation(failure, "kOk consumed nothing");
  const std::vector<std::string>& args = parser.args();
  if (args.empty()) Violation(failure, "kOk with zero args");
  if (args.size() > limits.max_args) Violation(failure, "args count > max_args");
  size_t total = 0;
  for (const std::string& a : args) {
    if (a.size() > limits.max_bulk_len) Violation(failure, "arg longer than max_bulk_len");
    total += a.size();
  }
  if (total > limits.max_request_bytes) Violation(failure, "request bytes > max_request_bytes");
}

// Feeds `data` as a sequence of chunks (sizes from `next_chunk`), acting like a server: bytes
// left unconsumed after kOk are kept and offered again together with the next chunk.
template <typename NextChunkFn>
ParseTrace Drive(std::string_view data, const protocol::ParserLimits& limits,
                 NextChunkFn next_chunk, std::string* failure) {
  using Result = protocol::RequestParser::Result;
  protocol::RequestParser parser(limits);
  ParseTrace trace;
  std::string pending;
  size_t offset = 0;
  while (offset < data.size()) {
    const size_t n = std::min(next_chunk(), data.size() - offset);
    pending.append(data.substr(offset, n));
    offset += n;
    while (!pending.empty()) {
      size_t consumed = 0;
      const Result r = parser.Parse(pending, &consumed);
      CheckResult(parser, r, pending.size(), consumed, limits, failure);
      if (!failure->empty()) return trace;
      if (r == Result::kError) {
        trace.error = parser.error();
        return trace;
      }
      pending.erase(0, consumed);
      if (r == Result::kNeedMore) break;
      trace.requests.push_back(parser.args());
    }
  }
  return trace;
}

// Encodes args as a RESP multibulk request.
inline std::string EncodeMultibulk(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

inline bool SameTrace(const ParseTrace& a, const ParseTrace& b) {
  return a.requests == b.requests && a.error == b.error;
}

}  // namespace internal

// Runs the parser over one fuzzer input and returns a description of the first violated
// invariant, or an empty string when all hold. Input layout: byte 0 selects the chunking
// pattern, byte 1 the limits, the rest is the byte stream. Checked:
//   * consumed <= input size; kNeedMore consumes everything; kError has a CR/LF-free message;
//   * every kOk has 1..max_args args, each <= max_bulk_len, total <= max_request_bytes;
//   * feeding the stream whole, in the selected chunks, and one byte at a time (for streams up
//     to 4 KiB) gives the same kOk argument vectors and the same final error;
//   * every parsed request, re-encoded as multibulk, parses back to the same arguments.
inline std::string CheckRespParser(const uint8_t* data, size_t size) {
  std::string failure;
  if (size < 2) return failure;
  const uint8_t mode = data[0];
  const protocol::ParserLimits limits = internal::LimitsFromByte(data[1]);
  const std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);

  const ParseTrace whole = internal::Drive(
      stream, limits, [&] { return stream.size(); }, &failure);
  if (!failure.empty()) return "whole: " + failure;

  ParseTrace chunked;
  if (mode & 0x80) {
    uint32_t rng = mode;
    chunked = internal::Drive(
        stream, limits, [&] { return internal::NextChunk(&rng); }, &failure);
  } else {
    const size_t chunk = 1 + (mode & 0x7f);
    chunked = internal::Drive(
        stream, limits, [&] { return chunk; }, &failure);
  }
  if (!failure.empty()) return "chunked: " + failure;
  if (!internal::SameTrace(whole, chunked)) return "chunked trace differs from whole trace";

  if (stream.size() <= 4096) {
    const ParseTrace bytewise = internal::Drive(
        stream, limits, [] { return size_t{1}; }, &failure);
    if (!failure.empty()) return "bytewise: " + failure;
    if (!internal::SameTrace(whole, bytewise)) return "bytewise trace differs from whole trace";
  }

  for (const std::vector<std::string>& args : whole.requests) {
    const std::string encoded = internal::EncodeMultibulk(args);
    protocol::RequestParser parser(limits);
    size_t consumed = 0;
    const protocol::RequestParser::Result r = parser.Parse(encoded, &consumed);
    if (r != protocol::RequestParser::Result::kOk || consumed != encoded.size() ||
        parser.args() != args) {
      return "re-encoded request does not parse back to the same args";
    }
  }
  return failure;
}

}  // namespace tollgate::fuzz

#endif  // TOLLGATE_FUZZ_RESP_PARSER_CHECK_H_
