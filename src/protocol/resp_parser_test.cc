#include "protocol/resp_parser.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tollgate::protocol {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Result = RequestParser::Result;
using Args = std::vector<std::string>;

constexpr char kInvalidMultibulk[] = "ERR Protocol error: invalid multibulk length";
constexpr char kTooBigMultibulk[] = "ERR Protocol error: too big mbulk count string";
constexpr char kInvalidBulk[] = "ERR Protocol error: invalid bulk length";
constexpr char kTooBigBulk[] = "ERR Protocol error: too big bulk count string";
constexpr char kTooLarge[] = "ERR Protocol error: request too large";
constexpr char kExpectedCrlf[] = "ERR Protocol error: expected CRLF after bulk";
constexpr char kTooBigInline[] = "ERR Protocol error: too big inline request";
constexpr char kTooManyInline[] = "ERR Protocol error: too many arguments in inline request";
constexpr char kUnbalanced[] = "ERR Protocol error: unbalanced quotes in request";

// Everything a parser produced for a byte stream.
struct Trace {
  std::vector<Args> requests;
  std::string error;  // empty unless the stream ended in kError
  bool ended_need_more = false;

  bool operator==(const Trace&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Trace& t) {
  os << "{requests=[";
  for (const Args& a : t.requests) {
    os << "[";
    for (const std::string& s : a) os << '"' << s << "\" ";
    os << "]";
  }
  return os << "], error=\"" << t.error << "\", need_more=" << t.ended_need_more << "}";
}

// Feeds `chunks` one after another like a server would: bytes left after kOk are kept and offered
// again with the next chunk.
Trace FeedChunks(const std::vector<std::string_view>& chunks, ParserLimits limits = {}) {
  RequestParser parser(limits);
  Trace trace;
  std::string pending;
  for (std::string_view chunk : chunks) {
    pending.append(chunk);
    while (true) {
      size_t consumed = 0;
      const Result r = parser.Parse(pending, &consumed);
      EXPECT_LE(consumed, pending.size());
      if (r == Result::kError) {
        trace.error = parser.error();
        trace.ended_need_more = false;
        return trace;
      }
      pending.erase(0, consumed);
      if (r == Result::kNeedMore) {
        EXPECT_TRUE(pending.empty());
        trace.ended_need_more = true;
        break;
      }
      trace.requests.push_back(parser.args());
      trace.ended_need_more = false;
    }
  }
  return trace;
}

Trace FeedWhole(std::string_view s, ParserLimits limits = {}) { return FeedChunks({s}, limits); }

Trace FeedBytewise(std::string_view s, ParserLimits limits = {}) {
  std::vector<std::string_view> chunks;
  for (size_t i = 0; i < s.size(); ++i) chunks.push_back(s.substr(i, 1));
  return FeedChunks(chunks, limits);
}

// Expects that a single Parse call over `input` fails with `message`.
void ExpectError(std::string_view input, std::string_view message, ParserLimits limits = {}) {
  SCOPED_TRACE(testing::Message() << "input: " << testing::PrintToString(std::string(input)));
  EXPECT_EQ(FeedWhole(input, limits).error, message);
  EXPECT_EQ(FeedBytewise(input, limits).error, message);
}

// Expects that `input` parses into exactly one request `args`, whole and byte by byte.
void ExpectOne(std::string_view input, const Args& args, ParserLimits limits = {}) {
  SCOPED_TRACE(testing::Message() << "input: " << testing::PrintToString(std::string(input)));
  RequestParser parser(limits);
  size_t consumed = 0;
  ASSERT_EQ(parser.Parse(input, &consumed), Result::kOk) << parser.error();
  EXPECT_EQ(consumed, input.size());
  EXPECT_EQ(parser.args(), args);
  const Trace bytewise = FeedBytewise(input, limits);
  EXPECT_EQ(bytewise.error, "");
  ASSERT_EQ(bytewise.requests.size(), 1u);
  EXPECT_EQ(bytewise.requests[0], args);
}

std::string Multibulk(const Args& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

// ---------------------------------------------------------------- multibulk basics

TEST(RespParserTest, ParsesMultibulkRequest) {
  ExpectOne("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", {"GET", "key"});
  ExpectOne("*1\r\n$0\r\n\r\n", {""});
}

TEST(RespParserTest, BinarySafeBulkWithCrlfAndNul) {
  const std::string value("a\r\nb\0c\n\r$*", 10);
  ASSERT_EQ(value.size(), 10u);
  ExpectOne(Multibulk({"SET", "k", value}), {"SET", "k", value});
}

TEST(RespParserTest, NeedMoreConsumesEverything) {
  RequestParser parser;
  size_t consumed = 99;
  EXPECT_EQ(parser.Parse("", &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, 0u);
  EXPECT_EQ(parser.Parse("*2\r\n$3\r\nGE", &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, 10u);
  EXPECT_EQ(parser.Parse("T\r\n$1", &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, 5u);
  EXPECT_EQ(parser.Parse("\r\nk\r", &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, 4u);
  EXPECT_EQ(parser.Parse("\n*1\r\n", &consumed), Result::kOk);
  EXPECT_EQ(consumed, 1u);
  EXPECT_THAT(parser.args(), ElementsAre("GET", "k"));
  EXPECT_EQ(parser.Parse("*1\r\n", &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, 4u);
  EXPECT_EQ(parser.Parse("$4\r\nPING\r\n", &consumed), Result::kOk);
  EXPECT_EQ(consumed, 10u);
  EXPECT_THAT(parser.args(), ElementsAre("PING"));
}

TEST(RespParserTest, PipelinedRequestsInOneBuffer) {
  const std::string a = Multibulk({"SET", "k", "v"});
  const std::string b = "PING\r\n";
  const std::string c = Multibulk({"GET", "k"});
  const std::string all = a + b + c + "*1\r\n$4\r\nEC";
  RequestParser parser;
  std::string_view rest = all;
  size_t consumed = 0;
  ASSERT_EQ(parser.Parse(rest, &consumed), Result::kOk);
  EXPECT_EQ(consumed, a.size());
  EXPECT_THAT(parser.args(), ElementsAre("SET", "k", "v"));
  rest.remove_prefix(consumed);
  ASSERT_EQ(parser.Parse(rest, &consumed), Result::kOk);
  EXPECT_EQ(consumed, b.size());
  EXPECT_THAT(parser.args(), ElementsAre("PING"));
  rest.remove_prefix(consumed);
  ASSERT_EQ(parser.Parse(rest, &consumed), Result::kOk);
  EXPECT_EQ(consumed, c.size());
  EXPECT_THAT(parser.args(), ElementsAre("GET", "k"));
  rest.remove_prefix(consumed);
  ASSERT_EQ(parser.Parse(rest, &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, rest.size());
  ASSERT_EQ(parser.Parse("HO\r\n", &consumed), Result::kOk);
  EXPECT_THAT(parser.args(), ElementsAre("ECHO"));
}

TEST(RespParserTest, EmptyMultibulkIsSkipped) {
  RequestParser parser;
  size_t consumed = 0;
  EXPECT_EQ(parser.Parse("*0\r\n", &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, 4u);
  EXPECT_EQ(parser.Parse("*-1\r\n*-7\r\n*0\r\n*1\r\n$1\r\nx\r\n*0\r\n", &consumed), Result::kOk);
  EXPECT_EQ(consumed, 25u);  // the skipped empty requests plus "*1\r\n$1\r\nx\r\n"
  EXPECT_THAT(parser.args(), ElementsAre("x"));
  EXPECT_EQ(parser.Parse("*0\r\n", &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, 4u);
}

TEST(RespParserTest, ArgsClearedOnNextParseAndMovableOut) {
  RequestParser parser;
  size_t consumed = 0;
  const std::string big(100, 'v');
  ASSERT_EQ(parser.Parse(Multibulk({"SET", "key", big}), &consumed), Result::kOk);
  std::string moved = std::move(parser.mutable_args()[2]);
  EXPECT_EQ(moved, big);
  ASSERT_EQ(parser.Parse(Multibulk({"GET", "key"}), &consumed), Result::kOk);
  EXPECT_THAT(parser.args(), ElementsAre("GET", "key"));
  ASSERT_EQ(parser.Parse(Multibulk({"A", big, "C", "D"}), &consumed), Result::kOk);
  EXPECT_THAT(parser.args(), ElementsAre("A", big, "C", "D"));
  ASSERT_EQ(parser.Parse("x\r\n", &consumed), Result::kOk);
  EXPECT_THAT(parser.args(), ElementsAre("x"));
}

TEST(RespParserTest, ErrorIsSticky) {
  RequestParser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Parse("*x\r\n", &consumed), Result::kError);
  EXPECT_EQ(parser.error(), kInvalidMultibulk);
  EXPECT_EQ(parser.Parse("*1\r\n$1\r\na\r\n", &consumed), Result::kError);
  EXPECT_EQ(consumed, 0u);
}

// ---------------------------------------------------------------- multibulk errors

TEST(RespParserTest, InvalidMultibulkLength) {
  for (const char* in :
       {"*abc\r\n", "*\r\n", "*1x\r\n", "*01\r\n", "*+1\r\n", "* 1\r\n", "*1 \r\n", "*-0\r\n",
        "*-\r\n", "*1\n", "*1\rx\n", "*99999999999999999999\r\n", "*1025\r\n"}) {
    ExpectError(in, kInvalidMultibulk);
  }
}

TEST(RespParserTest, MultibulkCountAtLimit) {
  ParserLimits limits;
  limits.max_args = 3;
  ExpectOne(Multibulk({"a", "b", "c"}), {"a", "b", "c"}, limits);
  ExpectError("*4\r\n", kInvalidMultibulk, limits);
  // The default limit: 1024 is accepted (needs more data), 1025 is not.
  RequestParser parser;
  size_t consumed = 0;
  EXPECT_EQ(parser.Parse("*1024\r\n", &consumed), Result::kNeedMore);
  Args many(1024, "x");
  ExpectOne(Multibulk(many), many);
}

TEST(RespParserTest, TooLongHeaderLines) {
  // 64 bytes before '\n' are fine (the integer is still validated), 65 are too many.
  const std::string ok_star = "*" + std::string(61, '0') + "1\r\n";  // 64 bytes + '\n'
  ASSERT_EQ(ok_star.size(), 65u);
  ExpectError(ok_star, kInvalidMultibulk);  // leading zeros
  ExpectError("*" + std::string(62, '0') + "1\r\n", kTooBigMultibulk);
  // Without any newline: 64 bytes wait for more, the 65th is an error.
  RequestParser parser;
  size_t consumed = 0;
  EXPECT_EQ(parser.Parse("*" + std::string(63, '1'), &consumed), Result::kNeedMore);
  EXPECT_EQ(parser.Parse("1", &consumed), Result::kError);
  EXPECT_EQ(parser.error(), kTooBigMultibulk);

  ExpectError("*1\r\n$" + std::string(62, '0') + "1\r\n", kTooBigBulk);
  ExpectError("*1\r\n$" + std::string(61, '0') + "1\r\n", kInvalidBulk);
  RequestParser parser2;
  EXPECT_EQ(parser2.Parse("*1\r\n$" + std::string(63, '1'), &consumed), Result::kNeedMore);
  EXPECT_EQ(parser2.Parse("1", &consumed), Result::kError);
  EXPECT_EQ(parser2.error(), kTooBigBulk);
}

TEST(RespParserTest, ExpectedDollar) {
  ExpectError("*1\r\nfoo\r\n", "ERR Protocol error: expected '$', got 'f'");
  ExpectError("*2\r\n$1\r\na\r\n:1\r\n", "ERR Protocol error: expected '$', got ':'");
  // CR/LF never appear in the message.
  ExpectError("*1\r\n\r\n", "ERR Protocol error: expected '$', got ' '");
  ExpectError("*1\r\n\n", "ERR Protocol error: expected '$', got ' '");
  // Reported as soon as the offending byte arrives.
  RequestParser parser;
  size_t consumed = 0;
  EXPECT_EQ(parser.Parse("*1\r\nx", &consumed), Result::kError);
}

TEST(RespParserTest, InvalidBulkLength) {
  for (const char* in :
       {"*1\r\n$abc\r\n", "*1\r\n$-1\r\n", "*1\r\n$-0\r\n", "*1\r\n$\r\n", "*1\r\n$01\r\n",
        "*1\r\n$1\n", "*1\r\n$ 1\r\n", "*1\r\n$99999999999999999999\r\n", "*1\r\n$8388609\r\n"}) {
    ExpectError(in, kInvalidBulk);
  }
}

TEST(RespParserTest, BulkLengthAtLimit) {
  ParserLimits limits;
  limits.max_bulk_len = 5;
  ExpectOne(Multibulk({"12345"}), {"12345"}, limits);
  ExpectError(Multibulk({"123456"}), kInvalidBulk, limits);
  // Default limit: exactly 8 MiB is accepted.
  const std::string big(8 * 1024 * 1024, 'b');
  RequestParser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Parse(Multibulk({big}), &consumed), Result::kOk);
  EXPECT_EQ(parser.args()[0], big);
}

TEST(RespParserTest, RequestBytesAtLimit) {
  ParserLimits limits;
  limits.max_request_bytes = 10;
  ExpectOne(Multibulk({"12345", "67890"}), {"12345", "67890"}, limits);
  ExpectError(Multibulk({"12345", "678901"}), kTooLarge, limits);
  // The limit applies per request, not per connection.
  const std::string two = Multibulk({"1234567890"}) + Multibulk({"1234567890"});
  const Trace t = FeedWhole(two, limits);
  EXPECT_EQ(t.error, "");
  EXPECT_EQ(t.requests.size(), 2u);
  // Declared lengths count before the data arrives.
  RequestParser parser(limits);
  size_t consumed = 0;
  EXPECT_EQ(parser.Parse("*2\r\n$5\r\n12345\r\n$6\r\n", &consumed), Result::kError);
  EXPECT_EQ(parser.error(), kTooLarge);
}

TEST(RespParserTest, ExpectedCrlfAfterBulk) {
  ExpectError("*1\r\n$3\r\nabcd\r\n", kExpectedCrlf);
  ExpectError("*1\r\n$3\r\nabc\rX", kExpectedCrlf);
  ExpectError("*1\r\n$3\r\nabc\n\r", kExpectedCrlf);
  ExpectError("*1\r\n$0\r\nx", kExpectedCrlf);
}

TEST(RespParserTest, DeclaredLengthDoesNotReserveAhead) {
  RequestParser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Parse("*1\r\n$8388608\r\nabc", &consumed), Result::kNeedMore);
  ASSERT_EQ(parser.args().size(), 1u);
  EXPECT_LE(parser.args()[0].capacity(), 64u * 1024);
  const std::string more(100 * 1024, 'x');
  ASSERT_EQ(parser.Parse(more, &consumed), Result::kNeedMore);
  EXPECT_LE(parser.args()[0].capacity(), 2 * (more.size() + 3) + 64 * 1024);
  ASSERT_EQ(parser.Parse("*1024\r\n", &consumed), Result::kNeedMore);  // bulk data, not a header
  EXPECT_EQ(parser.args()[0].size(), more.size() + 3 + 7);
}

// ---------------------------------------------------------------- inline

TEST(RespParserTest, InlineBasics) {
  ExpectOne("PING\r\n", {"PING"});
  ExpectOne("PING\n", {"PING"});
  ExpectOne("  SET\tkey   value \r\n", {"SET", "key", "value"});
  ExpectOne("a\vb\n", {"a\vb"});  // \v separates only at the start of a token, like Redis
  ExpectOne(std::string("GET a\0b\n", 8), {"GET", std::string("a\0b", 3)});
  // Only one trailing '\r' is stripped; an inner '\r' separates tokens.
  ExpectOne("a\rb\r\r\n", {"a", "b"});
}

TEST(RespParserTest, InlineBlankLinesSkipped) {
  RequestParser parser;
  size_t consumed = 0;
  EXPECT_EQ(parser.Parse("\r\n\n   \r\n\t\n", &consumed), Result::kNeedMore);
  EXPECT_EQ(consumed, 10u);
  EXPECT_EQ(parser.Parse("\r\nECHO hi\r\nX", &consumed), Result::kOk);
  EXPECT_EQ(consumed, 11u);
  EXPECT_THAT(parser.args(), ElementsAre("ECHO", "hi"));
}

TEST(RespParserTest, InlineQuoting) {
  ExpectOne("SET \"a b\" 'c d'\n", {"SET", "a b", "c d"});
  ExpectOne(R"(X "\n\r\t\b\a\\\"\q\x41\x7a\xZZ")"
            "\n",
            {"X", "\n\r\t\b\a\\\"qAzxZZ"});
  ExpectOne(R"(X "\x00\xff")"
            "\n",
            {"X", std::string("\0\xff", 2)});
  ExpectOne(R"(X 'it\'s' 'a\nb' 'c\\d')"
            "\n",
            {"X", "it's", "a\\nb", "c\\\\d"});
  ExpectOne("X \"\" ''\n", {"X", "", ""});
  ExpectOne("foo\"bar baz\" qux\n", {"foobar baz", "qux"});  // a quote may open mid-token
}

TEST(RespParserTest, InlineQuoteClosingRules) {
  ExpectOne("\"a\"\tb\n", {"a", "b"});
  ExpectOne("'a'\r\n", {"a"});
  ExpectOne("\"a\"  \n", {"a"});
  for (const char* in : {"\"abc\n", "'abc\n", "\"abc\"def\n", "'a'b\n", "x \"a\\\"\n", "x \"a\\\n",
                         "'\n", "\"\n", "a\"b\n", "\"a\"'b'\n"}) {
    ExpectError(in, kUnbalanced);
  }
}

TEST(RespParserTest, InlineLengthAtLimit) {
  ParserLimits limits;
  limits.max_inline_len = 10;
  ExpectOne("0123456789\r\n", {"0123456789"}, limits);
  ExpectOne("0123456789\n", {"0123456789"}, limits);
  ExpectError("01234567890\n", kTooBigInline, limits);
  ExpectError("0123456789A\r\n", kTooBigInline, limits);
  ExpectError("0123456789\r\r\n", kTooBigInline, limits);
  // Without a newline: 11 bytes may still be 10 + '\r'; 12 cannot.
  RequestParser parser(limits);
  size_t consumed = 0;
  EXPECT_EQ(parser.Parse("0123456789A", &consumed), Result::kNeedMore);
  EXPECT_EQ(parser.Parse("B", &consumed), Result::kError);
  EXPECT_EQ(parser.error(), kTooBigInline);

  // Default limit: 64 KiB.
  const std::string line(64 * 1024, 'a');
  ExpectOne(line + "\r\n", {line});
  ExpectError(line + "b\n", kTooBigInline);
}

TEST(RespParserTest, InlineArgumentLimits) {
  ParserLimits limits;
  limits.max_args = 2;
  ExpectOne("a b\n", {"a", "b"}, limits);
  ExpectError("a b c\n", kTooManyInline, limits);

  limits = {};
  limits.max_bulk_len = 3;
  ExpectOne("abc de\n", {"abc", "de"}, limits);
  ExpectError("abcd\n", kTooBigInline, limits);

  limits = {};
  limits.max_request_bytes = 5;
  ExpectOne("abc de\n", {"abc", "de"}, limits);
  ExpectError("abc def\n", kTooBigInline, limits);
}

// ---------------------------------------------------------------- incremental equivalence

const std::string& MixedStream() {
  static const std::string* s = new std::string(
      Multibulk({"SET", "key", std::string("v\r\n\0x", 5)}) + "*0\r\n" + "PING\r\n" + "  \r\n" +
      Multibulk({"GET", ""}) + "SET \"a\\x41 b\" 'c\\'d' e\r\n" + "*-1\r\n" +
      Multibulk({"HSET", "h", "f", std::string(300, 'z')}) + "ECHO x\n" + "*1\r\n$4\r\nPI");
  return *s;
}

TEST(RespParserTest, EverySplitPointGivesSameResult) {
  const std::vector<std::string> streams = {
      MixedStream(),
      MixedStream() + "NG\r\n*x\r\n",  // completes the PING, then an error
      "PING\r\nSET 'a\n",
      "*1\r\n$3\r\nfoo\r\n*1\r\nbar\r\n",
      "PING\r\n*2\r\n$1\r\na\r\n$" + std::string(70, '1') + "\r\n",
  };
  for (const std::string& s : streams) {
    const Trace whole = FeedWhole(s);
    ASSERT_FALSE(whole.requests.empty());
    for (size_t i = 0; i <= s.size(); ++i) {
      std::string_view v = s;
      EXPECT_EQ(FeedChunks({v.substr(0, i), v.substr(i)}), whole) << "split at " << i;
    }
    for (size_t i = 0; i <= s.size(); i += 7) {
      for (size_t j = i; j <= s.size(); j += 5) {
        std::string_view v = s;
        EXPECT_EQ(FeedChunks({v.substr(0, i), v.substr(i, j - i), v.substr(j)}), whole)
            << "split at " << i << "," << j;
      }
    }
    EXPECT_EQ(FeedBytewise(s), whole);
  }
  const Trace mixed = FeedWhole(MixedStream());
  EXPECT_EQ(mixed.error, "");
  EXPECT_TRUE(mixed.ended_need_more);
  ASSERT_EQ(mixed.requests.size(), 6u);
  EXPECT_THAT(mixed.requests[0], ElementsAre("SET", "key", std::string("v\r\n\0x", 5)));
  EXPECT_THAT(mixed.requests[1], ElementsAre("PING"));
  EXPECT_THAT(mixed.requests[2], ElementsAre("GET", ""));
  EXPECT_THAT(mixed.requests[3], ElementsAre("SET", "aA b", "c'd", "e"));
  EXPECT_THAT(mixed.requests[4], ElementsAre("HSET", "h", "f", std::string(300, 'z')));
  EXPECT_THAT(mixed.requests[5], ElementsAre("ECHO", "x"));
}

TEST(RespParserTest, SplitEquivalenceUnderSmallLimits) {
  ParserLimits limits;
  limits.max_args = 3;
  limits.max_bulk_len = 4;
  limits.max_inline_len = 8;
  limits.max_request_bytes = 9;
  const std::vector<std::string> streams = {
      Multibulk({"ab", "cd"}) + "x y\r\n" + Multibulk({"1234", "1234", "1"}) + "1234 567\r\n",
      Multibulk({"1234", "1234", "12"}),
      "12345678\r\r\n",
      "123456789",
      "a b c d\n",
      Multibulk({"12345"}),
  };
  for (const std::string& s : streams) {
    const Trace whole = FeedWhole(s, limits);
    for (size_t i = 0; i <= s.size(); ++i) {
      std::string_view v = s;
      EXPECT_EQ(FeedChunks({v.substr(0, i), v.substr(i)}, limits), whole) << s << " @" << i;
    }
    EXPECT_EQ(FeedBytewise(s, limits), whole) << s;
  }
  EXPECT_EQ(FeedWhole(streams[0], limits).requests.size(), 4u);
  EXPECT_EQ(FeedWhole(streams[1], limits).error, kTooLarge);
  EXPECT_EQ(FeedWhole(streams[2], limits).error, kTooBigInline);
  EXPECT_TRUE(FeedWhole(streams[3], limits).ended_need_more);
  EXPECT_EQ(FeedWhole(streams[4], limits).error, kTooManyInline);
  EXPECT_EQ(FeedWhole(streams[5], limits).error, kInvalidBulk);
}

TEST(RespParserTest, ErrorMessagesHaveNoCrlf) {
  for (const char* in : {"*1\r\n\r\n", "*1\r\n\n"}) {
    const Trace t = FeedWhole(in);
    EXPECT_THAT(t.requests, IsEmpty());
    EXPECT_EQ(t.error.find_first_of("\r\n"), std::string::npos);
  }
}

}  // namespace
}  // namespace tollgate::protocol
