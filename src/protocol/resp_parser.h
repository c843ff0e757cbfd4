// Incremental parser for client requests in the Redis serialization protocol (RESP).
//
// Understands both request forms a Redis server accepts:
//   * multibulk: "*<n>\r\n" followed by n times "$<len>\r\n<len bytes>\r\n" (binary safe);
//   * inline:    a text line ending in "\n" (an optional "\r" before it is stripped), split into
//                arguments with Redis's sdssplitargs quoting rules.
// The parser knows nothing about commands, connections or sockets; it only turns bytes into
// argument vectors.

#ifndef TOLLGATE_PROTOCOL_RESP_PARSER_H_
#define TOLLGATE_PROTOCOL_RESP_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::protocol {

// Upper bounds enforced while parsing one request. Exceeding any of them is a protocol error.
// A value exactly equal to a limit is accepted.
struct ParserLimits {
  size_t max_args = 1024;                       // elements in one request (multibulk or inline)
  size_t max_bulk_len = 8 * 1024 * 1024;        // bytes in one argument
  size_t max_inline_len = 64 * 1024;            // bytes in one inline line, excluding "\r\n"/"\n"
  size_t max_request_bytes = 32 * 1024 * 1024;  // sum of the argument bytes of one request
};

// Parses a stream of requests from one connection. Not thread-safe; one instance per connection.
//
// Error messages (error() after kError), all without the leading '-' and without CR/LF. Each is
// "ERR Protocol error: " followed by:
//   "invalid multibulk length"    "*" count not an integer, or > max_args
//   "too big mbulk count string"  "*" line longer than 64 bytes
//   "expected '$', got 'X'"       multibulk element does not start with '$' (X is that byte; a
//                                 CR or LF byte is shown as a space)
//   "invalid bulk length"         "$" length not an integer, < 0, or > max_bulk_len
//   "too big bulk count string"   "$" line longer than 64 bytes
//   "request too large"           declared argument bytes of a request > max_request_bytes
//   "expected CRLF after bulk"    bulk data not followed by "\r\n"
//   "too big inline request"      inline line > max_inline_len, an inline argument >
//                                 max_bulk_len, or inline argument bytes > max_request_bytes
//   "too many arguments in inline request"  inline line with more than max_args arguments
//   "unbalanced quotes in request"          bad inline quoting
// A header line is "*..." or "$..." up to (excluding) its "\n"; it must end in "\r".
//
// Determinism: the sequence of results (kOk argument vectors, the final error) depends only on
// the concatenation of all bytes fed, never on how they were split across Parse calls.
// Memory: buffered bytes and reserved capacity are bounded by the limits and by what has actually
// arrived (declared lengths only reserve up to 64 KiB ahead of the data).
class RequestParser {
 public:
  enum class Result { kOk, kNeedMore, kError };

  // Creates a parser that enforces `limits`.
  explicit RequestParser(ParserLimits limits = {});

  // Replaces the limits (the server tightens them for clients that have not authenticated yet).
  // REQUIRES: called between requests (before the first Parse, or right after a kOk); they apply
  // from the next request on.
  void set_limits(const ParserLimits& limits) { limits_ = limits; }
  const ParserLimits& limits() const { return limits_; }

  // Feeds bytes. Consumes as much of `input` as it can and sets *consumed (<= input.size()).
  // `consumed` must not be null.
  // kOk: one complete request is in args(); *consumed counts the bytes up to the end of that
  //   request (including any empty requests skipped before it), so the caller removes them and
  //   calls Parse again with the rest. The next Parse call starts a new request (args are cleared
  //   then).
  // kNeedMore: all of `input` was consumed and buffered/processed; call again when more bytes
  //   arrive.
  // kError: the input is malformed or exceeds a limit; error() gives the message (see above).
  //   The caller replies with it and closes the connection. Every later call returns kError with
  //   *consumed == 0.
  // Empty requests ("*0\r\n", "*-1\r\n", blank inline lines) are consumed silently.
  Result Parse(std::string_view input, size_t* consumed);

  // Arguments of the request completed by the last kOk. Only meaningful after kOk and until the
  // next Parse call.
  const std::vector<std::string>& args() const { return args_; }

  // Same as args(), mutable: after kOk the caller may move strings out (the parser then simply
  // does not reuse their buffers).
  std::vector<std::string>& mutable_args() { return args_; }

  // The error message after kError; empty otherwise.
  const std::string& error() const { return error_; }

 private:
  enum class State : uint8_t {
    kStart,        // between requests
    kArrayHeader,  // reading "*<n>\r\n"
    kBulkHeader,   // reading "$<len>\r\n"
    kBulkData,     // reading bulk payload
    kBulkCR,       // expecting '\r' after payload
    kBulkLF,       // expecting '\n' after payload
    kInline,       // reading an inline line
    kDone,         // returned kOk; next Parse recycles args
    kError,        // returned kError; sticky
  };
  enum class LineStatus : uint8_t { kComplete, kIncomplete, kTooLong };

  // Reads one line ending in '\n' starting at input[*pos], allowing at most `max_raw` bytes
  // before the '\n'. kComplete: *line is the bytes before '\n' (viewing `input` or line_), *pos
  // is past the '\n'. kIncomplete: the rest of input was appended to line_, *pos == input.size().
  // kTooLong: more than `max_raw` bytes precede any '\n' (counting line_); *pos unspecified.
  LineStatus ReadLine(std::string_view input, size_t* pos, size_t max_raw, std::string_view* line);

  // Forgets line_ contents after a complete line was processed; drops large buffers.
  void ReleaseLine();

  // Moves the strings of args_ to the spare pool and empties args_. Resets per-request counters.
  void BeginRequest();

  // Appends an empty string to args_ (reusing a pooled buffer when possible) and returns it.
  std::string& NewArg();

  // Handles a complete "*" header line (including its trailing '\r'). Returns false on error.
  bool OnArrayHeader(std::string_view line);
  // Handles a complete "$" header line (including its trailing '\r'). Returns the error message,
  // or nullptr on success.
  const char* OnBulkHeader(std::string_view line);
  // Splits a complete inline line (without "\r\n") into args_. Returns the error message, or
  // nullptr on success.
  const char* OnInlineLine(std::string_view line);

  // Records `msg` as the error and enters the error state. Returns Result::kError.
  Result Fail(std::string msg, size_t pos, size_t* consumed);

  ParserLimits limits_;
  State state_ = State::kStart;
  size_t args_expected_ = 0;   // multibulk element count of the current request
  size_t bulk_remaining_ = 0;  // payload bytes still to read for the current bulk
  size_t bulk_len_ = 0;        // declared length of the current bulk
  size_t request_bytes_ = 0;   // declared argument bytes of the current request so far
  std::string line_;           // partial header / inline line spanning Parse calls
  std::vector<std::string> args_;
  std::vector<std::string> spare_;  // recycled argument buffers
  std::string error_;
};

}  // namespace tollgate::protocol

#endif  // TOLLGATE_PROTOCOL_RESP_PARSER_H_
