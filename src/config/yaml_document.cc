#include "config/yaml_document.h"

#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "yaml-cpp/eventhandler.h"

namespace tollgate::config {
namespace {

// Records where the last document started and where its first node is; ignores the rest.
class DocumentStarts final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    start = mark;
    node = std::nullopt;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnMapEnd() override {}

  YAML::Mark start;                // the document's
  std::optional<YAML::Mark> node;  // its root node's

 private:
  void Node(const YAML::Mark& mark) {
    if (!node) node = mark;
  }
};

// Names the token at byte `pos` of the text, as yaml-cpp counts positions: from after a UTF-8
// byte order mark. Text that yaml-cpp reads as UTF-16 or UTF-32 (a byte order mark for those, or
// a zero byte among the first four) is counted in other units: the token is not named then.
std::string Unexpected(std::string_view text, int pos) {
  const std::string_view head = text.substr(0, 4);
  if (head.find('\0') != std::string_view::npos || head.starts_with("\xfe\xff") ||
      head.starts_with("\xff\xfe")) {
    return "unexpected token: it starts no YAML node";
  }
  if (text.starts_with("\xef\xbb\xbf")) text.remove_prefix(3);
  if (pos < 0 || static_cast<size_t>(pos) >= text.size()) return "unexpected end of the text";
  const unsigned char c = static_cast<unsigned char>(text[pos]);
  if (c >= 0x20 && c < 0x7f) return std::string("unexpected '") + static_cast<char>(c) + "'";
  char buf[40];
  std::snprintf(buf, sizeof buf, "unexpected byte 0x%02x", c);
  return buf;
}

}  // namespace

YamlDocument LoadFirstYamlDocument(std::string_view text) {
  const std::string s(text);
  // First pass, events only: how many documents (up to 3), and whether the parser is stuck. A
  // document that starts where the previous one started consumed nothing, and neither will any
  // after it.
  std::istringstream in(s);
  YAML::Parser parser(in);
  DocumentStarts events;
  std::vector<YAML::Mark> starts, nodes;
  while (starts.size() < 3 && parser.HandleNextDocument(events)) {
    if (!starts.empty() && events.start.pos == starts.back().pos) {
      throw YAML::ParserException(events.start, Unexpected(s, events.start.pos));
    }
    starts.push_back(events.start);
    nodes.push_back(events.node.value_or(events.start));
  }
  YamlDocument doc;
  if (starts.empty()) return doc;
  doc.root = YAML::Load(s);  // parses the first document only
  if (starts.size() > 1) doc.next = nodes[1];
  return doc;
}

}  // namespace tollgate::config
