// Loading YAML text that must hold one document (policy files, simulator scenarios), in a way that
// terminates on every input with the yaml-cpp Debian 12 ships (0.7.0).
#ifndef TOLLGATE_CONFIG_YAML_DOCUMENT_H_
#define TOLLGATE_CONFIG_YAML_DOCUMENT_H_

#include <optional>
#include <string_view>

#include "yaml-cpp/yaml.h"

namespace tollgate::config {

struct YamlDocument {
  YAML::Node root;                 // the first document; a Null node if the text holds none
  std::optional<YAML::Mark> next;  // where a second document's root node is, if there is one
};

// Parses the first document of `text`, and looks no further than the start of a second one.
// Use instead of YAML::LoadAll, which never returns (allocating until the process runs out of
// memory) when the text has a token that no node can start with where a document would begin
// ("," or "[a]," or "{a: 1},"): yaml-cpp then hands out empty documents without consuming that
// token, forever. Such text is reported as a syntax error at the token.
// Throws YAML::Exception, as yaml-cpp's own loaders do (YAML::ParserException with the position
// for syntax errors); callers catch it.
YamlDocument LoadFirstYamlDocument(std::string_view text);

}  // namespace tollgate::config

#endif  // TOLLGATE_CONFIG_YAML_DOCUMENT_H_
