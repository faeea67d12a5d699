// harvest/harvest.h — gather a labeled training set from INSPIRE (`create-dataset`).
//
// Two sources:
//  * OpenSearch (INSPIRE's production cluster, credentials needed), as the original
//    scripts/create_dataset.py: index records-hep (core: `core: true`; non_core: `core: false`
//    or no `core`), range on `_created`; index holdingpen-hep (rejected:
//    `_extra_data.approved: false`), range on `metadata.acquisition_source.datetime`. Scroll
//    API: POST /INDEX/_search?scroll=..., POST /_search/scroll, DELETE /_search/scroll.
//  * INSPIRE's public REST API: GET {api}/literature?q=da A->B&size&page&fields, following
//    links.next; label from metadata.core. Rejected papers are not public. A window whose
//    query would pass the result limit (page × size <= 10,000) is split into smaller ones.
//
// The range is walked one calendar month at a time. Rows go to "<output>.partial" and, after
// each finished month, the state "<output>.resume.json" records how far the run got, so that
// `resume` continues after the last finished month with no duplicated rows. At the end the
// partial file is renamed over <output> (atomic) and the state is removed.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "harvest/dates.h"
#include "harvest/http_client.h"

namespace harvest {

enum class Source { OpenSearch, InspireApi };

struct Options {
  Source source = Source::InspireApi;
  std::string es_url;          // OpenSearch base URL (records-hep), e.g. https://host/es
  std::string holdingpen_url;  // OpenSearch base URL for holdingpen-hep ("" = es_url)
  std::string api_url = "https://inspirehep.net/api";
  std::string username, password;  // OpenSearch basic auth ("" = none)
  std::string ca_cert;             // extra trusted CA (PEM) for https
  Window range;
  std::string output;              // JSON Lines file
  bool resume = false;
  bool rejected = true;            // OpenSearch: also read holdingpen-hep's rejected workflows
  int es_page_size = 9999;
  std::string scroll_keepalive = "5m";
  int api_page_size = 250;
  long max_results = 10000;        // REST API: page × size may not pass this
  RateLimit rate{15, 5.0};         // REST API: INSPIRE allows 15 requests per 5 s
  RetryPolicy retry;
  double timeout_s = 120;
};

// Labels, in the order of the counters.
inline const char* const kLabels[3] = {"rejected", "non_core", "core"};

struct Stats {
  std::size_t per_label[3] = {0, 0, 0};  // rows written, by kLabels index
  std::size_t no_abstract = 0;           // records dropped: no abstract
  std::size_t duplicates = 0;            // records whose id was already written
  std::size_t bad = 0;                   // records that could not be read (warned about)
  std::size_t missing = 0;               // hits announced by the server but never delivered
  std::size_t split_windows = 0;         // REST API windows split because of the result limit
  std::size_t requests = 0;
  std::size_t windows_done = 0, windows_total = 0;
  std::size_t resumed_rows = 0;          // rows already in the partial file when resuming
  double seconds = 0;
  std::size_t kept() const { return per_label[0] + per_label[1] + per_label[2]; }
};

struct Callbacks {
  // After every page: the current window ("2020-01-01..2020-01-31") and the counts so far.
  std::function<void(const Stats&, const std::string& window)> progress;
  std::function<void(const std::string&)> warn;
};

// Runs the harvest; returns the final counts. Throws HarvestError (network, HTTP status,
// malformed answers; the message names the URL), std::invalid_argument (bad options) or
// std::runtime_error (files). After a failure the partial file and the state stay, for resume.
Stats create_dataset(const Options& opt, const Callbacks& cb = {});

// One output row.
struct Row {
  nlohmann::json id;  // control number (integer), or a string for a holdingpen workflow without one
  std::string title, abstract, label, created;
  std::vector<std::string> inspire_categories;
  std::string text() const { return title + " <ENDTITLE> " + abstract; }
  std::string key() const { return id.is_string() ? id.get<std::string>() : id.dump(); }
  std::string jsonl() const;  // one JSON object, no newline
};

enum class RowStatus { Ok, NoAbstract, Bad };

// An OpenSearch hit of records-hep (label core/non_core decided by the caller) or of
// holdingpen-hep (rejected). `why` receives the problem for Bad.
RowStatus row_from_es_hit(const nlohmann::json& hit, const std::string& label, bool holdingpen, Row& row,
                          std::string& why);
// A hit of the REST API's literature search.
RowStatus row_from_api_hit(const nlohmann::json& hit, Row& row, std::string& why);

// The OpenSearch query (body of POST /INDEX/_search) for one label and window.
nlohmann::json opensearch_query(const std::string& label, const Window& w, int page_size);
// The REST API search URL (page 1) for a window.
std::string api_search_url(const std::string& api_url, const Window& w, int page_size);

}  // namespace harvest
