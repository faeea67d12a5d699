// harvest/harvest.cpp — see harvest.h.
#include "harvest/harvest.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <unordered_set>

#include "io/atomic_file.h"

namespace harvest {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

std::string Row::jsonl() const {
  ojson j;
  j["id"] = id;
  j["title"] = title;
  j["abstract"] = abstract;
  j["text"] = text();
  j["label"] = label;
  j["inspire_categories"] = inspire_categories;
  j["created"] = created;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// The string under arr[0][key], with the checks INSPIRE's shapes need. Returns false and sets
// why when the shape is wrong; leaves out empty when absent.
bool first_string(const json& obj, const char* list, const char* key, std::string& out, std::string& why) {
  out.clear();
  auto it = obj.find(list);
  if (it == obj.end() || it->is_null()) return true;
  if (!it->is_array()) return why = std::string("'") + list + "' is not a list", false;
  if (it->empty()) return true;
  const json& first = (*it)[0];
  if (!first.is_object()) return why = std::string("'") + list + "[0]' is not an object", false;
  auto v = first.find(key);
  if (v == first.end() || v->is_null()) return true;
  if (!v->is_string()) return why = std::string("'") + list + "[0]." + key + "' is not a string", false;
  out = v->get<std::string>();
  return true;
}

bool categories(const json& obj, std::vector<std::string>& out, std::string& why) {
  out.clear();
  auto it = obj.find("inspire_categories");
  if (it == obj.end() || it->is_null()) return true;
  if (!it->is_array()) return why = "'inspire_categories' is not a list", false;
  for (auto& c : *it) {
    if (!c.is_object()) return why = "an 'inspire_categories' entry is not an object", false;
    auto t = c.find("term");
    if (t != c.end() && t->is_string()) out.push_back(t->get<std::string>());
  }
  return true;
}

bool is_blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

RowStatus fill_text(const json& meta, Row& row, std::string& why) {
  if (!first_string(meta, "titles", "title", row.title, why)) return RowStatus::Bad;
  if (!first_string(meta, "abstracts", "value", row.abstract, why)) return RowStatus::Bad;
  if (!categories(meta, row.inspire_categories, why)) return RowStatus::Bad;
  if (is_blank(row.abstract)) return RowStatus::NoAbstract;
  if (is_blank(row.title)) return why = "no title", RowStatus::Bad;
  return RowStatus::Ok;
}

std::string string_at(const json& obj, std::initializer_list<const char*> path) {
  const json* cur = &obj;
  for (auto* k : path) {
    if (!cur->is_object()) return "";
    auto it = cur->find(k);
    if (it == cur->end()) return "";
    cur = &*it;
  }
  return cur->is_string() ? cur->get<std::string>() : "";
}

}  // namespace

RowStatus row_from_es_hit(const json& hit, const std::string& label, bool holdingpen, Row& row, std::string& why) {
  row = Row{};
  row.label = label;
  if (!hit.is_object()) return why = "a hit is not an object", RowStatus::Bad;
  auto src = hit.find("_source");
  if (src == hit.end() || !src->is_object()) return why = "hit without '_source'", RowStatus::Bad;
  const json* meta = &*src;
  if (holdingpen) {
    auto m = src->find("metadata");
    if (m == src->end() || !m->is_object()) return why = "workflow without 'metadata'", RowStatus::Bad;
    meta = &*m;
  }
  auto cn = meta->find("control_number");
  if (cn != meta->end() && cn->is_number_integer()) {
    row.id = cn->get<long long>();
  } else if (cn != meta->end() && cn->is_string() && !cn->get<std::string>().empty()) {
    row.id = cn->get<std::string>();
  } else if (holdingpen) {
    std::string wid;
    if (auto i = src->find("id"); i != src->end() && (i->is_number_integer() || i->is_string()))
      wid = i->is_string() ? i->get<std::string>() : i->dump();
    else if (auto h = hit.find("_id"); h != hit.end() && h->is_string())
      wid = h->get<std::string>();
    if (wid.empty()) return why = "workflow without an id", RowStatus::Bad;
    row.id = "holdingpen:" + wid;
  } else {
    return why = "record without 'control_number'", RowStatus::Bad;
  }
  row.created = holdingpen ? string_at(*meta, {"acquisition_source", "datetime"}) : string_at(*src, {"_created"});
  auto st = fill_text(*meta, row, why);
  if (st == RowStatus::Bad) why += " (id " + row.key() + ")";
  return st;
}

RowStatus row_from_api_hit(const json& hit, Row& row, std::string& why) {
  row = Row{};
  if (!hit.is_object()) return why = "a hit is not an object", RowStatus::Bad;
  auto m = hit.find("metadata");
  if (m == hit.end() || !m->is_object()) return why = "hit without 'metadata'", RowStatus::Bad;
  auto cn = m->find("control_number");
  if (cn != m->end() && cn->is_number_integer()) row.id = cn->get<long long>();
  else if (auto i = hit.find("id"); i != hit.end() && i->is_string() && !i->get<std::string>().empty() &&
                                    i->get<std::string>().find_first_not_of("0123456789") == std::string::npos)
    row.id = std::stoll(i->get<std::string>());
  else return why = "record without 'control_number'", RowStatus::Bad;
  auto core = m->find("core");
  if (core != m->end() && !core->is_null() && !core->is_boolean())
    return why = "'core' is not a boolean (id " + row.key() + ")", RowStatus::Bad;
  row.label = (core != m->end() && core->is_boolean() && core->get<bool>()) ? "core" : "non_core";
  row.created = string_at(hit, {"created"});
  auto st = fill_text(*m, row, why);
  if (st == RowStatus::Bad) why += " (id " + row.key() + ")";
  return st;
}

json opensearch_query(const std::string& label, const Window& w, int page_size) {
  json range = {{"gte", w.first.iso()}, {"lt", add_days(w.last, 1).iso()}};
  json filter = json::array();
  json source;
  if (label == "core") {
    filter.push_back({{"term", {{"core", true}}}});
  } else if (label == "non_core") {
    filter.push_back({{"bool",
                       {{"should", json::array({json{{"term", {{"core", false}}}},
                                                json{{"bool", {{"must_not", {{"exists", {{"field", "core"}}}}}}}}})},
                        {"minimum_should_match", 1}}}});
  } else if (label == "rejected") {
    filter.push_back({{"term", {{"_extra_data.approved", false}}}});
  } else {
    throw std::invalid_argument("opensearch_query: unknown label " + label);
  }
  if (label == "rejected") {
    filter.push_back({{"range", {{"metadata.acquisition_source.datetime", range}}}});
    source = {"id", "metadata.control_number", "metadata.titles.title", "metadata.abstracts.value",
              "metadata.inspire_categories.term", "metadata.acquisition_source.datetime"};
  } else {
    filter.push_back({{"range", {{"_created", range}}}});
    source = {"control_number", "titles.title", "abstracts.value", "inspire_categories.term", "_created"};
  }
  // track_total_hits: without it hits.total stops at 10,000 ("gte"), and the check that every
  // hit arrived would be blind past that.
  return json{{"size", page_size}, {"_source", source}, {"sort", json::array({"_doc"})}, {"track_total_hits", true},
              {"query", {{"bool", {{"filter", filter}}}}}};
}

static const char* kApiFields = "control_number,titles.title,abstracts.value,core,inspire_categories.term";

static std::string strip_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

std::string api_search_url(const std::string& api_url, const Window& w, int page_size) {
  return strip_slash(api_url) + "/literature?sort=mostrecent&size=" + std::to_string(page_size) +
         "&page=1&q=" + url_encode("da " + w.first.iso() + "->" + w.last.iso()) + "&fields=" + url_encode(kApiFields);
}

namespace {

class Run {
 public:
  Run(const Options& opt, const Callbacks& cb)
      : opt_(opt), cb_(cb), fetcher_(client_options(opt), opt.retry,
                                     opt.source == Source::InspireApi ? opt.rate : RateLimit{0, 0},
                                     [this](const std::string& m) { warn(m); }) {}

  Stats go();

 private:
  static ClientOptions client_options(const Options& o) {
    ClientOptions c;
    c.ca_cert = o.ca_cert;
    c.timeout_s = o.timeout_s;
    if (o.source == Source::OpenSearch && !o.username.empty()) c.basic_auth = o.username + ":" + o.password;
    return c;
  }
  void warn(const std::string& m) {
    if (cb_.warn) cb_.warn(m);
  }
  void progress() {
    stats_.requests = fetcher_.requests();
    stats_.seconds = elapsed();
    if (cb_.progress) cb_.progress(stats_, window_);
  }
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  json parse_answer(const HttpResponse& r, const std::string& what) {
    try {
      return json::parse(r.body);
    } catch (const json::exception& e) {
      throw HarvestError("malformed JSON in the answer to " + what + " (" + std::to_string(r.body.size()) +
                         " bytes): " + e.what());
    }
  }
  void take(const Row& row, RowStatus st, const std::string& why);
  void write_state();
  void opensearch_window(const Window& w);
  void opensearch_label(const Window& w, const std::string& label);
  void api_window(const Window& w);

  const Options& opt_;
  const Callbacks& cb_;
  Fetcher fetcher_;
  Stats stats_;
  std::string window_;
  std::unordered_set<std::string> seen_;
  std::FILE* out_ = nullptr;
  std::string partial_, state_;
  json params_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

void Run::take(const Row& row, RowStatus st, const std::string& why) {
  if (st == RowStatus::NoAbstract) {
    stats_.no_abstract++;
    return;
  }
  if (st == RowStatus::Bad) {
    stats_.bad++;
    warn("skipping a bad record: " + why);
    return;
  }
  if (!seen_.insert(row.key()).second) {
    stats_.duplicates++;
    return;
  }
  std::string line = row.jsonl();
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), out_) != line.size())
    throw std::runtime_error("cannot write to " + partial_);
  for (int k = 0; k < 3; ++k)
    if (row.label == kLabels[k]) stats_.per_label[k]++;
}

void Run::write_state() {
  if (std::fflush(out_) != 0 || ::fsync(fileno(out_)) != 0) throw std::runtime_error("cannot write to " + partial_);
  long bytes = std::ftell(out_);
  ojson s;
  s["version"] = 1;
  s["params"] = params_;
  s["windows_done"] = stats_.windows_done;
  s["partial_bytes"] = bytes;
  s["per_label"] = {stats_.per_label[0], stats_.per_label[1], stats_.per_label[2]};
  s["no_abstract"] = stats_.no_abstract;
  s["duplicates"] = stats_.duplicates;
  s["bad"] = stats_.bad;
  s["missing"] = stats_.missing;
  io::write_file_atomically(state_, [&](std::ostream& o) { o << s.dump(2) << "\n"; });
}

void Run::opensearch_label(const Window& w, const std::string& label) {
  bool hp = label == "rejected";
  std::string base = strip_slash(hp && !opt_.holdingpen_url.empty() ? opt_.holdingpen_url : opt_.es_url);
  std::string index = hp ? "holdingpen-hep" : "records-hep";
  std::string url = base + "/" + index + "/_search?scroll=" + opt_.scroll_keepalive;
  std::string what = "POST " + url;
  auto r = fetcher_.fetch("POST", url, opensearch_query(label, w, opt_.es_page_size).dump());
  std::size_t got = 0, total = 0;
  bool first = true, exact = true;
  std::string scroll_id;
  for (;;) {
    json j = parse_answer(r, what);
    auto hits = j.find("hits");
    if (!j.is_object() || hits == j.end() || !hits->is_object() || !hits->contains("hits") ||
        !(*hits)["hits"].is_array())
      throw HarvestError("unexpected answer to " + what + ": no hits.hits list");
    if (auto sh = j.find("_shards"); sh != j.end() && sh->is_object() && sh->value("failed", 0) > 0)
      throw HarvestError("the answer to " + what + " reports " + std::to_string(sh->value("failed", 0)) +
                         " failed shard(s): results would be incomplete");
    if (first) {
      auto& t = (*hits)["total"];
      if (t.is_number_unsigned() || t.is_number_integer()) total = t.get<std::size_t>();
      else if (t.is_object() && t.contains("value") && t["value"].is_number()) {
        total = t["value"].get<std::size_t>();
        exact = t.value("relation", std::string("eq")) == "eq";  // "gte": a lower bound only
      } else {
        throw HarvestError("unexpected answer to " + what + ": no hits.total");
      }
      first = false;
    }
    if (auto s = j.find("_scroll_id"); s != j.end() && s->is_string()) scroll_id = s->get<std::string>();
    auto& list = (*hits)["hits"];
    for (auto& h : list) {
      Row row;
      std::string why;
      auto st = row_from_es_hit(h, label, hp, row, why);
      take(row, st, why);
    }
    got += list.size();
    progress();
    if (list.empty() || (exact && got >= total)) break;
    if (scroll_id.empty()) throw HarvestError("the answer to " + what + " has no _scroll_id");
    url = base + "/_search/scroll";
    what = "POST " + url + " (" + index + ", " + label + ")";
    try {
      r = fetcher_.fetch("POST", url, json{{"scroll", opt_.scroll_keepalive}, {"scroll_id", scroll_id}}.dump());
    } catch (const HttpStatusError& e) {
      if (e.status() == 404)
        throw HarvestError(std::string(e.what()) + " — the scroll context expired or is unknown (after " +
                           std::to_string(got) + " of " + std::to_string(total) +
                           " hits); run again with --resume to redo this month");
      throw;
    }
  }
  if (!scroll_id.empty()) {
    try {
      fetcher_.fetch("DELETE", base + "/_search/scroll", json{{"scroll_id", json::array({scroll_id})}}.dump());
    } catch (const HarvestError& e) {
      warn(std::string("could not clear the scroll: ") + e.what());
    }
  }
  if (got < total)
    throw HarvestError("the scroll over " + base + "/" + index + " (" + label + ", " + w.str() + ") ended after " +
                       std::to_string(got) + " of " + std::to_string(total) + " hits");
}

void Run::opensearch_window(const Window& w) {
  opensearch_label(w, "core");
  opensearch_label(w, "non_core");
  if (opt_.rejected) opensearch_label(w, "rejected");
}

void Run::api_window(const Window& w) {
  std::string url = api_search_url(opt_.api_url, w, opt_.api_page_size);
  Url api = parse_url(opt_.api_url);
  auto r = fetcher_.fetch("GET", url);
  std::size_t got = 0, total = 0;
  bool first = true;
  for (;;) {
    json j = parse_answer(r, "GET " + url);
    auto hits = j.find("hits");
    if (!j.is_object() || hits == j.end() || !hits->is_object() || !hits->contains("hits") ||
        !(*hits)["hits"].is_array())
      throw HarvestError("unexpected answer to GET " + url + ": no hits.hits list");
    if (first) {
      auto& t = (*hits)["total"];
      if (t.is_number_unsigned() || t.is_number_integer()) total = t.get<std::size_t>();
      else if (t.is_object() && t.contains("value") && t["value"].is_number()) total = t["value"].get<std::size_t>();
      else throw HarvestError("unexpected answer to GET " + url + ": no hits.total");
      first = false;
      // The API pages through page × size <= max_results only.
      const long reachable = (opt_.max_results / opt_.api_page_size) * opt_.api_page_size;
      if (long(total) > reachable) {
        if (w.days() > 1) {
          stats_.split_windows++;
          auto [a, b] = split_window(w);
          api_window(a);
          api_window(b);
          return;
        }
        warn("the day " + w.first.iso() + " has " + std::to_string(total) + " records, more than the " +
             std::to_string(reachable) + " the API can page through: only the first " +
             std::to_string(reachable) + " are read");
        stats_.missing += total - std::size_t(reachable);
        total = std::size_t(reachable);
      }
    }
    auto& list = (*hits)["hits"];
    for (auto& h : list) {
      Row row;
      std::string why;
      auto st = row_from_api_hit(h, row, why);
      take(row, st, why);
    }
    got += list.size();
    progress();
    if (list.empty() || got >= total) break;
    auto links = j.find("links");
    if (links == j.end() || !links->is_object() || !links->contains("next")) break;
    auto& next = (*links)["next"];
    if (!next.is_string()) throw HarvestError("unexpected answer to GET " + url + ": links.next is not a string");
    Url nu = parse_url(next.get<std::string>());
    if (nu.scheme != api.scheme || nu.host != api.host || nu.port != api.port)
      throw HarvestError("links.next in the answer to GET " + url + " points to another server: " + nu.origin());
    url = nu.str();
    r = fetcher_.fetch("GET", url);
  }
  if (got < total) {
    warn("window " + w.str() + ": the API announced " + std::to_string(total) + " records but delivered " +
         std::to_string(got));
    stats_.missing += total - got;
  }
}

Stats Run::go() {
  namespace fs = std::filesystem;
  if (opt_.output.empty()) throw std::invalid_argument("no output file");
  if (opt_.source == Source::OpenSearch && opt_.es_url.empty()) throw std::invalid_argument("no OpenSearch URL");
  if (opt_.api_page_size < 1 || opt_.es_page_size < 1 || opt_.api_page_size > opt_.max_results)
    throw std::invalid_argument("page sizes must be at least 1, and the REST API page size at most " +
                                std::to_string(opt_.max_results));
  // Validate URLs early (clear message, and never a URL with credentials).
  if (opt_.source == Source::OpenSearch) {
    parse_url(opt_.es_url);
    if (!opt_.holdingpen_url.empty()) parse_url(opt_.holdingpen_url);
  } else {
    parse_url(opt_.api_url);
  }
  partial_ = opt_.output + ".partial";
  state_ = opt_.output + ".resume.json";
  auto windows = month_windows(opt_.range);
  stats_.windows_total = windows.size();
  params_ = json{{"source", opt_.source == Source::OpenSearch ? "opensearch" : "inspire-api"},
                 {"url", opt_.source == Source::OpenSearch ? opt_.es_url : opt_.api_url},
                 {"holdingpen_url", opt_.source == Source::OpenSearch ? opt_.holdingpen_url : ""},
                 {"rejected", opt_.source == Source::OpenSearch && opt_.rejected},
                 {"from", opt_.range.first.iso()},
                 {"to", opt_.range.last.iso()}};
  std::size_t start = 0;
  long keep_bytes = 0;
  bool resuming = false;
  if (opt_.resume && fs::exists(state_)) {
    json s;
    try {
      std::ifstream in(state_);
      s = json::parse(in);
    } catch (const std::exception& e) {
      throw std::runtime_error(state_ + ": cannot read the resume state: " + e.what());
    }
    if (!s.is_object() || s.value("version", 0) != 1 || !s.contains("params") || !s["windows_done"].is_number_unsigned() ||
        !s["partial_bytes"].is_number_integer())
      throw std::runtime_error(state_ + ": not a resume state written by create-dataset");
    if (s["params"] != params_)
      throw std::invalid_argument("--resume: " + state_ + " is for another run (" + s["params"].dump() +
                                  "); give the same source, URL and dates, or drop --resume to start over");
    if (!fs::exists(partial_) || long(fs::file_size(partial_)) < s["partial_bytes"].get<long>())
      throw std::runtime_error(partial_ + " is missing or shorter than " + state_ + " records; cannot resume");
    start = s["windows_done"].get<std::size_t>();
    keep_bytes = s["partial_bytes"].get<long>();
    for (int k = 0; k < 3; ++k) stats_.per_label[k] = s["per_label"][k].get<std::size_t>();
    stats_.no_abstract = s.value("no_abstract", std::size_t(0));
    stats_.duplicates = s.value("duplicates", std::size_t(0));
    stats_.bad = s.value("bad", std::size_t(0));
    stats_.missing = s.value("missing", std::size_t(0));
    resuming = true;
  } else if (opt_.resume) {
    warn("nothing to resume (" + state_ + " not found): starting from the beginning");
  } else if (fs::exists(state_)) {
    warn("starting over: the interrupted run in " + state_ + " is discarded (use --resume to continue it)");
  }
  if (resuming) {
    fs::resize_file(partial_, keep_bytes);  // drop the rows of the unfinished month
    std::ifstream in(partial_);
    std::string line;
    std::size_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      try {
        auto j = json::parse(line);
        const auto& id = j.at("id");
        seen_.insert(id.is_string() ? id.get<std::string>() : id.dump());
      } catch (const std::exception& e) {
        throw std::runtime_error(partial_ + ":" + std::to_string(n) + ": unreadable row: " + e.what());
      }
    }
    stats_.resumed_rows = n;
    stats_.windows_done = start;
  }
  out_ = std::fopen(partial_.c_str(), resuming ? "ab" : "wb");
  if (!out_) throw std::runtime_error("cannot open " + partial_ + " for writing");
  struct Closer {
    std::FILE*& f;
    ~Closer() {
      if (f) std::fclose(f);
    }
  } closer{out_};
  write_state();
  for (std::size_t i = start; i < windows.size(); ++i) {
    window_ = windows[i].str();
    if (opt_.source == Source::OpenSearch) opensearch_window(windows[i]);
    else api_window(windows[i]);
    stats_.windows_done = i + 1;
    write_state();
    progress();
  }
  if (std::fclose(out_) != 0) {
    out_ = nullptr;
    throw std::runtime_error("cannot write to " + partial_);
  }
  out_ = nullptr;
  std::error_code ec;
  fs::rename(partial_, opt_.output, ec);
  if (ec) throw std::runtime_error("cannot rename " + partial_ + " to " + opt_.output + ": " + ec.message());
  fs::remove(state_, ec);
  stats_.requests = fetcher_.requests();
  stats_.seconds = elapsed();
  return stats_;
}

}  // namespace

Stats create_dataset(const Options& opt, const Callbacks& cb) {
  Run run(opt, cb);
  return run.go();
}

}  // namespace harvest
