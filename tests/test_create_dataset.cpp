// ctest-labels: cli
// tests/test_create_dataset.cpp — `create-dataset` (harvest/): dates, queries, record
// conversion, and whole runs against the local fake INSPIRE (tests/fake_inspire_server.h):
// OpenSearch scroll + basic auth, REST API pagination + window splitting, 429 / 500 /
// malformed / truncated answers, resume, and the command line.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "harvest/harvest.h"
#include "io/dataset.h"
#include "tests/cli_helpers.h"
#include "tests/fake_inspire_server.h"

namespace fs = std::filesystem;
using nlohmann::json;
using harvest::Date;
using harvest::Window;

namespace {

std::vector<json> read_lines(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

// What a correct harvest of [a, b] (inclusive days) must give from the fixture, by id: label.
std::map<std::string, std::string> expected(const fake::Server& s, const std::string& a, const std::string& b,
                                            bool rejected) {
  std::map<std::string, std::string> m;
  for (auto& r : s.literature) {
    std::string d = r["_created"].get<std::string>().substr(0, 10);
    if (d < a || d > b || !r.contains("abstracts")) continue;
    m[std::to_string(r["control_number"].get<long>())] = (r.contains("core") && r["core"] == true) ? "core" : "non_core";
  }
  if (rejected)
    for (auto& w : s.workflows) {
      std::string d = w["metadata"]["acquisition_source"]["datetime"].get<std::string>().substr(0, 10);
      if (d >= a && d <= b) m["holdingpen:" + std::to_string(w["id"].get<long>())] = "rejected";
    }
  return m;
}

std::map<std::string, std::string> got(const std::vector<json>& rows) {
  std::map<std::string, std::string> m;
  for (auto& r : rows) m[r["id"].is_string() ? r["id"].get<std::string>() : r["id"].dump()] = r["label"];
  return m;
}

harvest::Options es_options(const fake::Server& s, const fs::path& out) {
  harvest::Options o;
  o.source = harvest::Source::OpenSearch;
  o.es_url = s.es_url();
  o.username = "reader";
  o.password = "s3cret-Pa55";
  o.range = harvest::make_range("2019-11", "2019-12");
  o.output = out.string();
  o.es_page_size = 2;
  o.retry.time_scale = 0.001;
  o.retry.max_attempts = 3;
  o.timeout_s = 10;
  return o;
}

harvest::Options api_options(const fake::Server& s, const fs::path& out) {
  harvest::Options o;
  o.source = harvest::Source::InspireApi;
  o.api_url = s.api_url();
  o.range = harvest::make_range("2019-11", "2020-02");
  o.output = out.string();
  o.api_page_size = 2;
  o.retry.time_scale = 0.001;
  o.retry.max_attempts = 3;
  o.rate = {1000, 1};
  o.timeout_s = 10;
  return o;
}

}  // namespace

TEST(HarvestDates, RangeIsInclusiveOfTheWholeEndMonth) {
  Window w = harvest::make_range("2019-11", "2019-12");
  EXPECT_EQ(w.first.iso(), "2019-11-01");
  EXPECT_EQ(w.last.iso(), "2019-12-31");  // the original's `lt 2019-12-01` lost December
  EXPECT_EQ(harvest::make_range("2020", "2020").last.iso(), "2020-12-31");
  EXPECT_EQ(harvest::make_range("2024-2", "2024-02").last.iso(), "2024-02-29");
  // month_to < month_from with a later year is fine (the original refused it)
  Window x = harvest::make_range("2019-11", "2020-02");
  EXPECT_EQ(x.last.iso(), "2020-02-29");
  auto months = harvest::month_windows(x);
  ASSERT_EQ(months.size(), 4u);
  EXPECT_EQ(months[1].str(), "2019-12-01..2019-12-31");
  EXPECT_EQ(months[3].str(), "2020-02-01..2020-02-29");
  EXPECT_THROW(harvest::make_range("2020-03", "2020-02"), std::invalid_argument);
  EXPECT_THROW(harvest::make_range("2020-13", "2021"), std::invalid_argument);
  EXPECT_THROW(harvest::make_range("20", "2021"), std::invalid_argument);
  auto [a, b] = harvest::split_window(months[0]);
  EXPECT_EQ(a.str(), "2019-11-01..2019-11-15");
  EXPECT_EQ(b.str(), "2019-11-16..2019-11-30");
  EXPECT_EQ(harvest::add_days(Date{2019, 12, 31}, 1).iso(), "2020-01-01");
}

TEST(HarvestQuery, OpenSearchQueriesMatchTheOriginalWithAnInclusiveEnd) {
  Window w = harvest::make_range("2019-11", "2019-12");
  json core = harvest::opensearch_query("core", w, 9999);
  EXPECT_EQ(core["size"], 9999);
  EXPECT_EQ(core["track_total_hits"], true);  // else hits.total stops at 10,000
  EXPECT_EQ(core["query"]["bool"]["filter"][0], (json{{"term", {{"core", true}}}}));
  EXPECT_EQ(core["query"]["bool"]["filter"][1]["range"]["_created"], (json{{"gte", "2019-11-01"}, {"lt", "2020-01-01"}}));
  json non = harvest::opensearch_query("non_core", w, 10);
  EXPECT_NE(non.dump().find(R"("must_not":{"exists":{"field":"core"}})"), std::string::npos) << non.dump();
  EXPECT_NE(non.dump().find(R"({"term":{"core":false}})"), std::string::npos);
  json rej = harvest::opensearch_query("rejected", w, 10);
  EXPECT_EQ(rej["query"]["bool"]["filter"][0], (json{{"term", {{"_extra_data.approved", false}}}}));
  EXPECT_TRUE(rej["query"]["bool"]["filter"][1]["range"].contains("metadata.acquisition_source.datetime"));
  for (auto* q : {&core, &non, &rej}) {  // only the fields it needs
    ASSERT_TRUE((*q)["_source"].is_array());
    for (auto& f : (*q)["_source"]) EXPECT_EQ(f.get<std::string>().find('*'), std::string::npos);
    EXPECT_LE((*q)["_source"].size(), 6u);
  }
  std::string url = harvest::api_search_url("https://inspirehep.net/api/", w, 250);
  EXPECT_EQ(url.rfind("https://inspirehep.net/api/literature?", 0), 0u) << url;
  EXPECT_NE(url.find("q=da%202019-11-01-%3E2019-12-31"), std::string::npos) << url;
  EXPECT_NE(url.find("size=250"), std::string::npos);
  EXPECT_NE(url.find("fields="), std::string::npos);
}

TEST(HarvestRows, ConvertsInspireShapes) {
  fake::Server s;
  harvest::Row row;
  std::string why;
  json hit = {{"_id", "x"}, {"_source", s.literature[0]}};
  ASSERT_EQ(harvest::row_from_es_hit(hit, "core", false, row, why), harvest::RowStatus::Ok) << why;
  EXPECT_EQ(row.id, s.literature[0]["control_number"]);
  EXPECT_EQ(row.title, s.literature[0]["titles"][0]["title"]);
  EXPECT_EQ(row.text(), row.title + " <ENDTITLE> " + row.abstract);
  EXPECT_EQ(row.created, s.literature[0]["_created"]);
  ASSERT_FALSE(row.inspire_categories.empty());
  json wf = {{"_id", "77"}, {"_source", s.workflows[0]}};
  ASSERT_EQ(harvest::row_from_es_hit(wf, "rejected", true, row, why), harvest::RowStatus::Ok) << why;
  EXPECT_EQ(row.id, "holdingpen:" + s.workflows[0]["id"].dump());
  json noabs = hit;
  noabs["_source"]["abstracts"] = json::array();
  EXPECT_EQ(harvest::row_from_es_hit(noabs, "core", false, row, why), harvest::RowStatus::NoAbstract);
  json badtitle = hit;
  badtitle["_source"]["titles"] = "not a list";
  EXPECT_EQ(harvest::row_from_es_hit(badtitle, "core", false, row, why), harvest::RowStatus::Bad);
  EXPECT_NE(why.find("titles"), std::string::npos) << why;
  json api = {{"id", "5"}, {"created", "2020-01-01"}, {"metadata", s.literature[9]}};  // no `core`
  ASSERT_EQ(harvest::row_from_api_hit(api, row, why), harvest::RowStatus::Ok) << why;
  EXPECT_EQ(row.label, "non_core");
  api["metadata"]["core"] = true;
  ASSERT_EQ(harvest::row_from_api_hit(api, row, why), harvest::RowStatus::Ok);
  EXPECT_EQ(row.label, "core");
  api["metadata"]["core"] = "yes";
  EXPECT_EQ(harvest::row_from_api_hit(api, row, why), harvest::RowStatus::Bad);
}

TEST(CreateDatasetOpenSearch, ScrollsAllThreeLabelsWithBasicAuth) {
  auto dir = clitest::fresh_dir("cds_es");
  fake::Server s;
  s.user = "reader";
  s.password = "s3cret-Pa55";
  auto opt = es_options(s, dir / "out.jsonl");
  std::vector<std::string> progress;
  harvest::Callbacks cb;
  cb.progress = [&](const harvest::Stats&, const std::string& w) { progress.push_back(w); };
  auto st = harvest::create_dataset(opt, cb);
  auto rows = read_lines(dir / "out.jsonl");
  auto want = expected(s, "2019-11-01", "2019-12-31", true);
  EXPECT_EQ(got(rows), want);
  EXPECT_EQ(rows.size(), want.size());
  EXPECT_TRUE(want.count("1079463")) << "the record of 2019-12-31 (end month) must be there";
  EXPECT_EQ(st.no_abstract, 1u);
  EXPECT_EQ(st.kept(), rows.size());
  EXPECT_GT(st.per_label[0], 0u);
  EXPECT_EQ(s.scrolls_opened.load(), 6);  // 2 months × 3 labels
  EXPECT_EQ(s.scrolls_cleared.load(), 6);
  EXPECT_EQ(s.rejected_auth.load(), 0);
  EXPECT_FALSE(progress.empty());
  EXPECT_FALSE(fs::exists(dir / "out.jsonl.partial"));
  EXPECT_FALSE(fs::exists(dir / "out.jsonl.resume.json"));
  for (auto& r : rows) {
    EXPECT_EQ(r["text"], r["title"].get<std::string>() + " <ENDTITLE> " + r["abstract"].get<std::string>());
    EXPECT_TRUE(r["inspire_categories"].is_array());
    EXPECT_FALSE(r["created"].get<std::string>().empty());
  }
  // train -d reads it: every line is a good labeled record.
  std::vector<io::RecordError> errors;
  io::DatasetOptions dopt;
  dopt.require_label = true;
  auto recs = io::read_all((dir / "out.jsonl").string(), &errors, dopt);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(recs.size(), rows.size());
  fs::remove_all(dir);
}

TEST(CreateDatasetOpenSearch, ALowerBoundTotalDoesNotCutTheScrollShort) {
  auto dir = clitest::fresh_dir("cds_gte");
  fake::Server s;
  s.cap_total = 1;  // as OpenSearch without track_total_hits past 10,000: {"value": 1, "relation": "gte"}
  auto opt = es_options(s, dir / "out.jsonl");
  opt.username.clear();
  opt.es_page_size = 1;
  harvest::create_dataset(opt);
  EXPECT_EQ(got(read_lines(dir / "out.jsonl")), expected(s, "2019-11-01", "2019-12-31", true));
  fs::remove_all(dir);
}

TEST(CreateDatasetOpenSearch, RefusedCredentialsGiveAClearErrorWithoutThePassword) {
  auto dir = clitest::fresh_dir("cds_auth");
  fake::Server s;
  s.user = "reader";
  s.password = "right-one";
  auto opt = es_options(s, dir / "out.jsonl");
  opt.password = "Wr0ng-Secret-42";
  try {
    harvest::create_dataset(opt);
    FAIL() << "no error";
  } catch (const harvest::HttpStatusError& e) {
    std::string m = e.what();
    EXPECT_EQ(e.status(), 401);
    EXPECT_NE(m.find("HTTP 401"), std::string::npos) << m;
    EXPECT_NE(m.find(s.es_url() + "/records-hep/_search"), std::string::npos) << m;
    EXPECT_EQ(m.find("Wr0ng-Secret-42"), std::string::npos) << m;
  }
  EXPECT_EQ(s.requests.load(), 1) << "a 401 is not retried";
  EXPECT_FALSE(fs::exists(dir / "out.jsonl"));
  fs::remove_all(dir);
}

TEST(CreateDatasetOpenSearch, ExpiredScrollIsAnErrorAndResumeFinishesWithoutDuplicates) {
  auto dir = clitest::fresh_dir("cds_expire");
  fake::Server s;
  auto opt = es_options(s, dir / "out.jsonl");
  opt.username.clear();
  // First run: December's scrolls expire after one page.
  s.fault = [&](const fake::Req& r, int) -> std::optional<fake::Resp> {
    if (r.path != "/es/_search/scroll")  // a new search: December's scrolls expire after one page
      s.expire_scroll_after_pages = (r.body.find("2019-12-01") != std::string::npos) ? 1 : 0;
    return std::nullopt;
  };
  try {
    harvest::create_dataset(opt);
    FAIL() << "no error";
  } catch (const harvest::HarvestError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("HTTP 404"), std::string::npos) << m;
    EXPECT_NE(m.find("expired"), std::string::npos) << m;
    EXPECT_NE(m.find("--resume"), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(dir / "out.jsonl"));
  ASSERT_TRUE(fs::exists(dir / "out.jsonl.resume.json"));
  EXPECT_EQ(json::parse(std::ifstream(dir / "out.jsonl.resume.json"))["windows_done"], 1);
  // Resume with a healthy server: November is not asked again, December is redone.
  s.set_fault(nullptr);
  s.expire_scroll_after_pages = 0;
  int before = s.requests.load();
  opt.resume = true;
  auto st = harvest::create_dataset(opt);
  EXPECT_GT(st.resumed_rows, 0u);
  {
    std::lock_guard<std::mutex> lk(s.mu);
    for (std::size_t i = before; i < s.targets.size(); ++i) EXPECT_EQ(s.targets[i].find("2019-11"), std::string::npos);
  }
  auto rows = read_lines(dir / "out.jsonl");
  EXPECT_EQ(got(rows), expected(s, "2019-11-01", "2019-12-31", true));
  EXPECT_EQ(rows.size(), got(rows).size()) << "duplicated rows";
  fs::remove_all(dir);
}

TEST(CreateDatasetOpenSearch, MalformedTruncatedAndServerErrors) {
  auto dir = clitest::fresh_dir("cds_faults");
  fake::Server s;
  auto opt = es_options(s, dir / "out.jsonl");
  opt.username.clear();
  // 500 twice, then fine: retried, and the data is complete.
  std::vector<std::string> warnings;
  harvest::Callbacks cb;
  cb.warn = [&](const std::string& m) { warnings.push_back(m); };
  s.fault = [](const fake::Req&, int n) -> std::optional<fake::Resp> {
    if (n <= 2) return fake::Resp{500, R"({"error": "boom"})"};
    return std::nullopt;
  };
  harvest::create_dataset(opt, cb);
  EXPECT_EQ(got(read_lines(dir / "out.jsonl")), expected(s, "2019-11-01", "2019-12-31", true));
  ASSERT_GE(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("HTTP 500"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("retrying"), std::string::npos) << warnings[0];

  auto expect_error = [&](std::function<std::optional<fake::Resp>(const fake::Req&, int)> f, const std::string& needle) {
    s.set_fault(f);
    fs::remove(dir / "out.jsonl");
    try {
      harvest::create_dataset(opt);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const harvest::HarvestError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(s.es_url()), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "out.jsonl"));
  };
  expect_error([](const fake::Req&, int) -> std::optional<fake::Resp> { return fake::Resp{503, "down"}; },
               "HTTP 503 (after 3 attempts)");
  expect_error([](const fake::Req& r, int) -> std::optional<fake::Resp> {
    if (r.path.find("_search/scroll") != std::string::npos) return fake::Resp{200, R"({"_scroll_id": "x", "hits": {"hits": [)"};
    return std::nullopt;
  }, "malformed JSON");
  expect_error([](const fake::Req& r, int) -> std::optional<fake::Resp> {
    if (r.path.find("records-hep") != std::string::npos) {
      fake::Resp t{200, std::string(400, ' ') + "{}"};
      t.truncate = true;
      return t;
    }
    return std::nullopt;
  }, "truncated");
  // A scroll that stops early (an empty page before hits.total) is an error, not less data.
  expect_error([](const fake::Req& r, int) -> std::optional<fake::Resp> {
    if (r.path == "/es/_search/scroll" && r.method == "POST")
      return fake::Resp{200, R"({"_scroll_id": "x", "hits": {"total": {"value": 3}, "hits": []}})"};
    return std::nullopt;
  }, "ended after");
  fs::remove_all(dir);
}

TEST(CreateDatasetApi, PaginatesFollowsNextAndSplitsWindowsOverTheResultLimit) {
  auto dir = clitest::fresh_dir("cds_api");
  fake::Server s;
  s.api_max_results = 4;  // page × size beyond 4: HTTP 400, as INSPIRE beyond 10,000
  // The same paper again, added in another month: written once.
  json dup = s.literature[2];
  dup["_created"] = "2020-02-10T00:00:00";
  s.literature.push_back(dup);
  auto opt = api_options(s, dir / "out.jsonl");
  opt.max_results = 4;  // December has 5 records: split; January 3: two pages
  auto st = harvest::create_dataset(opt);
  auto rows = read_lines(dir / "out.jsonl");
  auto want = expected(s, "2019-11-01", "2020-02-29", false);
  EXPECT_EQ(got(rows), want);
  EXPECT_EQ(rows.size(), want.size());
  EXPECT_EQ(st.duplicates, 1u);
  EXPECT_GT(st.split_windows, 0u);
  EXPECT_EQ(st.missing, 0u);
  std::lock_guard<std::mutex> lk(s.mu);
  bool followed_next = false, asked_da = false;
  for (auto& t : s.targets) {
    followed_next |= t.find("page=2") != std::string::npos;
    asked_da |= t.find("q=da%202019-11-01-%3E2019-11-30") != std::string::npos;
  }
  EXPECT_TRUE(followed_next);
  EXPECT_TRUE(asked_da);
  fs::remove_all(dir);
}

TEST(CreateDatasetApi, Honours429RetryAfterAndTheRateLimit) {
  auto dir = clitest::fresh_dir("cds_429");
  fake::Server s;
  auto opt = api_options(s, dir / "out.jsonl");
  opt.range = harvest::make_range("2019-12", "2019-12");
  opt.retry.time_scale = 0.1;  // Retry-After: 2 → 0.2 s
  opt.rate = {2, 1.0};         // 2 requests per 0.1 s (scaled)
  std::vector<std::chrono::steady_clock::time_point> times;
  s.fault = [&](const fake::Req&, int n) -> std::optional<fake::Resp> {
    times.push_back(std::chrono::steady_clock::now());
    if (n == 1) return fake::Resp{429, R"({"message": "Too many requests"})", {{"Retry-After", "2"}}};
    return std::nullopt;
  };
  std::vector<std::string> warnings;
  harvest::Callbacks cb;
  cb.warn = [&](const std::string& m) { warnings.push_back(m); };
  auto st = harvest::create_dataset(opt, cb);
  EXPECT_EQ(got(read_lines(dir / "out.jsonl")), expected(s, "2019-12-01", "2019-12-31", false));
  ASSERT_GE(times.size(), 4u);
  // Times are taken on the server side, so allow for scheduling jitter under load; without the
  // waits the gaps would be a few milliseconds.
  EXPECT_GE(times[1] - times[0], std::chrono::milliseconds(150)) << "Retry-After not honoured";
  for (std::size_t i = 2; i < times.size(); ++i)  // never 3 requests within one 100 ms window
    EXPECT_GE(times[i] - times[i - 2], std::chrono::milliseconds(50)) << "rate limit broken at request " << i;
  EXPECT_GE(st.seconds, 0.2 + 0.1 * double((times.size() - 2) / 2) - 0.01);
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find("429"), std::string::npos);
  EXPECT_EQ(st.requests, times.size());
  fs::remove_all(dir);
}

TEST(CreateDatasetCli, RunsAgainstTheLocalServerAndNeverPrintsThePassword) {
  auto dir = clitest::fresh_dir("cds_cli");
  fake::Server s;
  s.user = "reader";
  s.password = "Top-S3cret-pw";
  auto out = dir / "out.jsonl";
  std::string common = " create-dataset --source opensearch --es-url " + s.es_url() +
                       " --year-from 2019 --month-from 11 --year-to 2020 --month-to 1 --page-size 3 --time-scale 0.001 --retries 2 -o " +
                       out.string();
  int rc = 0;
  std::string log = clitest::run("ES_USERNAME=reader ES_PASSWORD=Top-S3cret-pw " + clitest::kBin + common, &rc, true);
  EXPECT_EQ(rc, 0) << log;
  EXPECT_EQ(log.find("Top-S3cret-pw"), std::string::npos) << log;
  EXPECT_NE(log.find("window 2019-12-01..2019-12-31"), std::string::npos) << log;
  EXPECT_NE(log.find("without abstract"), std::string::npos) << log;
  EXPECT_EQ(got(read_lines(out)), expected(s, "2019-11-01", "2020-01-31", true));
  // Wrong password: exit 1, a message naming the URL and the status, never the password.
  log = clitest::run("ES_USERNAME=reader ES_PASSWORD=Other-S3cret " + clitest::kBin + common, &rc, true);
  EXPECT_EQ(WEXITSTATUS(rc), 1) << log;
  EXPECT_NE(log.find("HTTP 401"), std::string::npos) << log;
  EXPECT_EQ(log.find("Other-S3cret"), std::string::npos) << log;
  // Usage errors: exit 2.
  log = clitest::run(clitest::kBin + " create-dataset --source inspire-api --from 2020-03 --to 2020-02 -o x.jsonl", &rc, true);
  EXPECT_EQ(WEXITSTATUS(rc), 2) << log;
  EXPECT_NE(log.find("before"), std::string::npos) << log;
  log = clitest::run(clitest::kBin + " create-dataset --source opensearch --es-url http://u:p@h/es --from 2020 --to 2020 -o x.jsonl", &rc, true);
  EXPECT_EQ(WEXITSTATUS(rc), 2) << log;
  EXPECT_NE(log.find("ES_USERNAME"), std::string::npos) << log;
  log = clitest::run(clitest::kBin + " create-dataset --help", &rc, true);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(log.find("ES_PASSWORD"), std::string::npos);
  EXPECT_NE(log.find("not public"), std::string::npos);
  EXPECT_EQ(log.find("--time-scale"), std::string::npos) << "hidden test option shown";
  fs::remove_all(dir);
}

TEST(CreateDatasetTls, HttpsWithAPrivateCaAndRefusedWithoutIt) {
  auto dir = clitest::fresh_dir("cds_tls");
  fake::Server s(/*tls=*/true);
  auto opt = api_options(s, dir / "out.jsonl");
  opt.range = harvest::make_range("2019-12", "2019-12");
  opt.retry.max_attempts = 1;
  try {
    harvest::create_dataset(opt);  // the system CAs do not know the test CA
    FAIL() << "no error";
  } catch (const harvest::NetworkError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("TLS handshake failed"), std::string::npos) << m;
    EXPECT_NE(m.find("--ca-cert"), std::string::npos) << m;
  }
  opt.ca_cert = INSPIRE_SOURCE_DIR "/tests/fixtures/harvest/tls/ca.pem";
  harvest::create_dataset(opt);
  EXPECT_EQ(got(read_lines(dir / "out.jsonl")), expected(s, "2019-12-01", "2019-12-31", false));
  fs::remove_all(dir);
}

TEST(HarvestHttp, UrlsBase64AndRetryAfter) {
  auto u = harvest::parse_url("https://inspirehep.net/api");
  EXPECT_EQ(u.host, "inspirehep.net");
  EXPECT_EQ(u.port, "443");
  EXPECT_EQ(u.target, "/api");
  EXPECT_EQ(u.str(), "https://inspirehep.net/api");
  auto v = harvest::parse_url("http://127.0.0.1:9200");
  EXPECT_EQ(v.port, "9200");
  EXPECT_EQ(v.target, "/");
  EXPECT_EQ(v.origin(), "http://127.0.0.1:9200");
  EXPECT_THROW(harvest::parse_url("ftp://host/x"), std::invalid_argument);
  EXPECT_THROW(harvest::parse_url("http://host:99999/"), std::invalid_argument);
  try {
    harvest::parse_url("https://user:PaSsWoRd@host/es");
    FAIL() << "credentials in a URL accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("PaSsWoRd"), std::string::npos) << e.what();
  }
  EXPECT_EQ(harvest::base64_encode("reader:s3cret"), "cmVhZGVyOnMzY3JldA==");
  EXPECT_EQ(harvest::base64_encode("ab"), "YWI=");
  EXPECT_EQ(harvest::base64_encode("a"), "YQ==");
  EXPECT_EQ(harvest::url_encode("da 2020-01-01->2020-01-31"), "da%202020-01-01-%3E2020-01-31");
  EXPECT_EQ(harvest::parse_retry_after(" 7 "), 7);
  EXPECT_LT(harvest::parse_retry_after("soon"), 0);
  std::time_t later = std::time(nullptr) + 30;
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", std::gmtime(&later));
  double ra = harvest::parse_retry_after(date);
  EXPECT_GE(ra, 25);
  EXPECT_LE(ra, 31);
}
