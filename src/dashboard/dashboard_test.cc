#include "dashboard/dashboard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace tollgate::dashboard {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DashboardTest, PageInlinesEveryAsset) {
  std::string html(DashboardHtml());
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_THAT(html, HasSubstr("</html>"));
  EXPECT_THAT(html, Not(HasSubstr("{{")));
  for (const char* f : {"charts.css", "error_hook.js", "hover.js", "charts.js"}) {
    EXPECT_THAT(html, HasSubstr(ReadFile(std::string(TOLLGATE_CHART_ASSETS) + "/" + f))) << f;
  }
  for (const char* f : {"dashboard.css", "dashboard.js"}) {
    EXPECT_THAT(html, HasSubstr(ReadFile(std::string(TOLLGATE_DASHBOARD_ASSETS) + "/" + f))) << f;
  }
  EXPECT_EQ(DashboardHtml().data(), DashboardHtml().data());  // static storage
}

TEST(DashboardTest, NoExternalResources) {
  std::string html(DashboardHtml());
  // The SVG namespace is a name, not a resource.
  const std::string ns = "http://www.w3.org/2000/svg";
  for (size_t p = html.find(ns); p != std::string::npos; p = html.find(ns)) html.erase(p, ns.size());
  for (const char* s : {"http:", "https:", "//cdn", " src=", " href=", "url(", "@import", "<link",
                        "<img", "<iframe"}) {
    EXPECT_THAT(html, Not(HasSubstr(s))) << s;
  }
  EXPECT_THAT(html, HasSubstr("fetch('metrics'"));
}

}  // namespace
}  // namespace tollgate::dashboard
