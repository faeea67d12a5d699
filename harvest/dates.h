// harvest/dates.h — calendar dates and the date windows a harvest walks through.
// All windows are inclusive of both ends (a day is the unit: INSPIRE's `da A->B` is inclusive,
// and an OpenSearch range is written gte A, lt (B + 1 day)).
#pragma once

#include <compare>
#include <string>
#include <utility>
#include <vector>

namespace harvest {

struct Date {
  int y = 1970, m = 1, d = 1;
  auto operator<=>(const Date&) const = default;
  std::string iso() const;  // YYYY-MM-DD
};

int days_in_month(int y, int m);
long days_from_civil(const Date& d);  // days since 1970-01-01
Date civil_from_days(long z);
Date add_days(const Date& d, long n);

struct Window {
  Date first, last;  // inclusive
  auto operator<=>(const Window&) const = default;
  long days() const { return days_from_civil(last) - days_from_civil(first) + 1; }
  std::string str() const;  // "2020-01-01..2020-01-31"
};

// "YYYY" or "YYYY-MM" (also "YYYY-M"). begin: the first day of that year/month; end: the last.
// Throws std::invalid_argument naming the flag (`what`) and the value.
Date parse_month_begin(const std::string& s, const std::string& what);
Date parse_month_end(const std::string& s, const std::string& what);

// The whole range, first day of `from` to last day of `to`; throws std::invalid_argument when
// `to` is before `from`.
Window make_range(const std::string& from, const std::string& to);

// One window per calendar month (the first and last clipped to the range).
std::vector<Window> month_windows(const Window& range);

// Two halves of a window of two days or more.
std::pair<Window, Window> split_window(const Window& w);

}  // namespace harvest
