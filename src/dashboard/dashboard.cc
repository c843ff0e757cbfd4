#include "dashboard/dashboard.h"

#include "dashboard/dashboard_html.h"

namespace tollgate::dashboard {

std::string_view DashboardHtml() noexcept { return kDashboardHtml; }

}  // namespace tollgate::dashboard
