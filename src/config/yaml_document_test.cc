#include "config/yaml_document.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tollgate::config {
namespace {

using ::testing::HasSubstr;

TEST(LoadFirstYamlDocument, OneDocument) {
  const YamlDocument doc = LoadFirstYamlDocument("a: 1\nb: [x, y]\n");
  ASSERT_TRUE(doc.root.IsMap());
  EXPECT_EQ(doc.root["b"][1].Scalar(), "y");
  EXPECT_FALSE(doc.next.has_value());
}

TEST(LoadFirstYamlDocument, NoDocumentIsANullRoot) {
  for (const char* empty : {"", "# only a comment\n", "---\n", "...\n"}) {
    const YamlDocument doc = LoadFirstYamlDocument(empty);
    EXPECT_TRUE(doc.root.IsNull()) << empty;
    EXPECT_FALSE(doc.next.has_value()) << empty;
  }
}

TEST(LoadFirstYamlDocument, SecondDocumentIsFoundAtItsRootNode) {
  struct Case {
    const char* text;
    int line, column;  // 0-based
  };
  for (const Case& c : {Case{"a: 1\n---\nb: 2\n", 2, 0}, Case{"a\n--- [b]\n", 1, 4},
                        Case{"a\n---\nb\n---\nc\n---\nd\n", 2, 0}}) {
    const YamlDocument doc = LoadFirstYamlDocument(c.text);
    EXPECT_EQ(doc.root.Scalar().empty(), doc.root.IsMap()) << c.text;
    ASSERT_TRUE(doc.next.has_value()) << c.text;
    EXPECT_EQ(doc.next->line, c.line) << c.text;
    EXPECT_EQ(doc.next->column, c.column) << c.text;
  }
}

// yaml-cpp 0.7's YAML::LoadAll never returns on these (it allocates empty documents forever);
// found by fuzz/policy_yaml_fuzz (its first reproducer was ",\x08\x00\x00\x00\x07]").
TEST(LoadFirstYamlDocument, TokenThatStartsNoNodeIsASyntaxErrorNotAHang) {
  struct Case {
    std::string text;
    int line, column;  // 0-based, of the stray token
    const char* what;
  };
  for (const Case& c :
       {Case{",", 0, 0, "unexpected ','"}, Case{"\n\n,", 2, 0, "unexpected ','"},
        Case{"[a],", 0, 3, "unexpected ','"}, Case{"{a: 1},", 0, 6, "unexpected ','"},
        Case{"- a\n,", 1, 0, "unexpected ','"}, Case{"\xef\xbb\xbf[a],", 0, 3, "unexpected ','"},
        Case{std::string(",\x08\0\0\0\x07]", 7), 0, 0, "unexpected token"}}) {
    try {
      (void)LoadFirstYamlDocument(c.text);
      ADD_FAILURE() << "no exception for " << c.text;
    } catch (const YAML::ParserException& e) {
      EXPECT_EQ(e.mark.line, c.line) << c.text;
      EXPECT_EQ(e.mark.column, c.column) << c.text;
      EXPECT_THAT(e.msg, HasSubstr(c.what)) << c.text;
    }
  }
}

TEST(LoadFirstYamlDocument, SyntaxErrorsStillThrow) {
  EXPECT_THROW((void)LoadFirstYamlDocument("a: [1\n"), YAML::ParserException);
}

}  // namespace
}  // namespace tollgate::config
