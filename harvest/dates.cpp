// harvest/dates.cpp — see dates.h.
#include "harvest/dates.h"

#include <cctype>
#include <cstdio>
#include <stdexcept>

namespace harvest {

std::string Date::iso() const {
  char b[32];
  std::snprintf(b, sizeof b, "%04d-%02d-%02d", y, m, d);
  return b;
}

std::string Window::str() const { return first.iso() + ".." + last.iso(); }

int days_in_month(int y, int m) {
  static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : n[m - 1];
}

// H. Hinnant's civil-date algorithms.
long days_from_civil(const Date& dt) {
  long y = dt.y - (dt.m <= 2);
  long era = (y >= 0 ? y : y - 399) / 400;
  long yoe = y - era * 400;
  long doy = (153 * (dt.m + (dt.m > 2 ? -3 : 9)) + 2) / 5 + dt.d - 1;
  long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

Date civil_from_days(long z) {
  z += 719468;
  long era = (z >= 0 ? z : z - 146096) / 146097;
  long doe = z - era * 146097;
  long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long y = yoe + era * 400;
  long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  long mp = (5 * doy + 2) / 153;
  int d = int(doy - (153 * mp + 2) / 5 + 1);
  int m = int(mp < 10 ? mp + 3 : mp - 9);
  return Date{int(y + (m <= 2)), m, d};
}

Date add_days(const Date& d, long n) { return civil_from_days(days_from_civil(d) + n); }

namespace {

// Returns {year, month or 0}.
std::pair<int, int> parse_year_month(const std::string& s, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument(what + ": '" + s + "' is not a month: " + why + " (use YYYY or YYYY-MM)");
  };
  auto digits = [](const std::string& t) {
    if (t.empty()) return false;
    for (unsigned char c : t)
      if (!std::isdigit(c)) return false;
    return true;
  };
  std::string ys = s, ms;
  if (auto p = s.find('-'); p != std::string::npos) ys = s.substr(0, p), ms = s.substr(p + 1);
  if (!digits(ys) || ys.size() != 4) throw bad("the year must have 4 digits");
  int y = std::stoi(ys);
  if (y < 1900 || y > 2999) throw bad("year out of range");
  if (s.find('-') == std::string::npos) return {y, 0};
  if (!digits(ms) || ms.size() > 2) throw bad("the month must be 1 to 12");
  int m = std::stoi(ms);
  if (m < 1 || m > 12) throw bad("the month must be 1 to 12");
  return {y, m};
}

}  // namespace

Date parse_month_begin(const std::string& s, const std::string& what) {
  auto [y, m] = parse_year_month(s, what);
  return Date{y, m == 0 ? 1 : m, 1};
}

Date parse_month_end(const std::string& s, const std::string& what) {
  auto [y, m] = parse_year_month(s, what);
  if (m == 0) m = 12;
  return Date{y, m, days_in_month(y, m)};
}

Window make_range(const std::string& from, const std::string& to) {
  Window w{parse_month_begin(from, "--from"), parse_month_end(to, "--to")};
  if (w.last < w.first)
    throw std::invalid_argument("--to " + to + " is before --from " + from);
  return w;
}

std::vector<Window> month_windows(const Window& range) {
  std::vector<Window> out;
  Date cur = range.first;
  while (cur <= range.last) {
    Date end{cur.y, cur.m, days_in_month(cur.y, cur.m)};
    if (range.last < end) end = range.last;
    out.push_back({cur, end});
    cur = add_days(end, 1);
  }
  return out;
}

std::pair<Window, Window> split_window(const Window& w) {
  long n = w.days();
  if (n < 2) throw std::logic_error("split_window: a one-day window cannot be split");
  Date mid = add_days(w.first, n / 2 - 1);
  return {Window{w.first, mid}, Window{add_days(mid, 1), w.last}};
}

}  // namespace harvest
