// tests/fake_inspire_server.h — a local HTTP server (127.0.0.1, ephemeral port, in the test
// process) that plays INSPIRE's OpenSearch (scroll API, basic auth) and REST API (literature
// search with `da A->B`, pagination and links.next, the 10,000-result limit), serving the
// records of tests/fixtures/harvest/inspire_records.json in INSPIRE's JSON shapes. A fault hook
// lets a test answer any request with 429 / 500 / malformed or truncated bodies.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harvest/http_client.h"

namespace fake {

using json = nlohmann::json;

struct Req {
  std::string method, target, path, body, authorization;
  std::map<std::string, std::string> query;  // decoded
};

struct Resp {
  Resp(int st = 200, std::string b = "", std::vector<std::pair<std::string, std::string>> h = {})
      : status(st), body(std::move(b)), headers(std::move(h)) {}
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool truncate = false;  // announce a longer Content-Length, send part of the body, close
};

inline std::string url_decode(const std::string& s) {
  std::string o;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      o += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      o += ' ';
    } else {
      o += s[i];
    }
  }
  return o;
}

class Server {
 public:
  // The fixture's records; tests may edit them before the first request.
  json literature, workflows;
  std::string user, password;   // when set, OpenSearch paths demand this basic auth
  long api_max_results = 10000;  // page × size beyond this: HTTP 400, as INSPIRE
  int expire_scroll_after_pages = 0;  // >0: forget a scroll context after this many pages
  std::size_t cap_total = 0;  // >0: hits.total stops there with relation "gte" (no track_total_hits)
  // Called first for every request with its 1-based number; a value is sent instead.
  std::function<std::optional<Resp>(const Req&, int n)> fault;

  std::atomic<int> requests{0}, scrolls_opened{0}, scrolls_cleared{0}, rejected_auth{0};
  std::vector<std::string> auth_seen;  // Authorization headers, in order
  std::vector<std::string> targets;    // "METHOD target body", in order
  std::mutex mu;

  // tls: serve https with tests/fixtures/harvest/tls/server.pem (signed by ca.pem there).
  explicit Server(bool tls = false) : tls_(tls) {
    if (tls_) {
      const std::string d = INSPIRE_SOURCE_DIR "/tests/fixtures/harvest/tls/";
      ctx_.use_certificate_chain_file(d + "server.pem");
      ctx_.use_private_key_file(d + "server.key", boost::asio::ssl::context::pem);
    }
    std::ifstream in(INSPIRE_SOURCE_DIR "/tests/fixtures/harvest/inspire_records.json");
    json j = json::parse(in);
    literature = j["literature"];
    workflows = j["workflows"];
    acceptor_.open(tcp::v4());
    acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { loop(); });
  }
  ~Server() {
    stop_ = true;
    boost::system::error_code ec;
    tcp::socket s(ioc_);
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);  // wake accept()
    thread_.join();
  }
  void set_fault(std::function<std::optional<Resp>(const Req&, int n)> f) {
    std::lock_guard<std::mutex> lk(mu);
    fault = std::move(f);
  }
  std::string base() const { return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_); }
  std::string es_url() const { return base() + "/es"; }
  std::string api_url() const { return base() + "/api"; }

 private:
  using tcp = boost::asio::ip::tcp;
  bool tls_ = false;
  boost::asio::ssl::context ctx_{boost::asio::ssl::context::tls_server};
  boost::asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  unsigned short port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  struct Scroll {
    std::vector<json> hits;
    std::size_t pos = 0, size = 0;
    int pages = 0;
  };
  std::map<std::string, Scroll> scrolls_;
  int next_scroll_ = 0;


  void loop() {
    namespace http = boost::beast::http;
    while (!stop_) {
      tcp::socket sock(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(sock, ec);
      if (ec || stop_) continue;
      if (tls_) {
        boost::asio::ssl::stream<tcp::socket&> ts(sock, ctx_);
        ts.handshake(boost::asio::ssl::stream_base::server, ec);
        if (ec) continue;  // e.g. the client refused the certificate
        serve(ts);
        ts.shutdown(ec);
      } else {
        serve(sock);
        sock.shutdown(tcp::socket::shutdown_both, ec);
      }
    }
  }

  template <class Stream>
  void serve(Stream& sock) {
    namespace http = boost::beast::http;
    boost::system::error_code ec;
    {
      boost::beast::flat_buffer buf;
      http::request<http::string_body> hreq;
      http::read(sock, buf, hreq, ec);
      if (ec) return;
      Req r;
      r.method = std::string(hreq.method_string());
      r.target = std::string(hreq.target());
      r.body = hreq.body();
      r.authorization = std::string(hreq[http::field::authorization]);
      auto q = r.target.find('?');
      r.path = r.target.substr(0, q);
      if (q != std::string::npos) {
        std::string qs = r.target.substr(q + 1);
        std::size_t p = 0;
        while (p <= qs.size()) {
          auto amp = qs.find('&', p);
          std::string kv = qs.substr(p, amp == std::string::npos ? std::string::npos : amp - p);
          auto eq = kv.find('=');
          if (!kv.empty()) r.query[url_decode(kv.substr(0, eq))] = eq == std::string::npos ? "" : url_decode(kv.substr(eq + 1));
          if (amp == std::string::npos) break;
          p = amp + 1;
        }
      }
      int n = ++requests;
      Resp resp;
      {
        std::lock_guard<std::mutex> lk(mu);
        targets.push_back(r.method + " " + r.target + " " + r.body);
        auth_seen.push_back(r.authorization);
        std::optional<Resp> f = fault ? fault(r, n) : std::nullopt;
        resp = f ? *f : route(r);
      }
      std::string head = "HTTP/1.1 " + std::to_string(resp.status) + " X\r\nContent-Type: application/json\r\n";
      for (auto& [k, v] : resp.headers) head += k + ": " + v + "\r\n";
      std::size_t announced = resp.body.size() + (resp.truncate ? 1000 : 0);
      head += "Content-Length: " + std::to_string(announced) + "\r\nConnection: close\r\n\r\n";
      std::string payload = head + (resp.truncate ? resp.body.substr(0, resp.body.size() / 2) : resp.body);
      boost::asio::write(sock, boost::asio::buffer(payload), ec);
    }
  }

  static Resp error(int status, const std::string& type, const std::string& reason) {
    return Resp{status, json{{"error", {{"root_cause", json::array({{{"type", type}, {"reason", reason}}})},
                                        {"type", type}, {"reason", reason}}},
                             {"status", status}}.dump()};
  }

  static std::string day(const std::string& datetime) { return datetime.substr(0, 10); }

  Resp route(const Req& r) {
    if (r.path.rfind("/es/", 0) == 0) {
      if (!user.empty() && r.authorization != "Basic " + harvest::base64_encode(user + ":" + password)) {
        ++rejected_auth;
        return error(401, "security_exception", "missing authentication credentials for REST request");
      }
      return opensearch(r);
    }
    if (r.path == "/api/literature" && r.method == "GET") return api(r);
    return Resp{404, R"({"message": "not found"})"};
  }

  Resp scroll_page(const std::string& id) {
    Scroll& s = scrolls_[id];
    json page = json::array();
    for (std::size_t k = 0; k < s.size && s.pos < s.hits.size(); ++k) page.push_back(s.hits[s.pos++]);
    s.pages++;
    json out = {{"_scroll_id", id}, {"took", 1}, {"timed_out", false},
                {"_shards", {{"total", 1}, {"successful", 1}, {"skipped", 0}, {"failed", 0}}},
                {"hits", {{"total", {{"value", s.hits.size()}, {"relation", "eq"}}}, {"max_score", nullptr}, {"hits", page}}}};
    if (cap_total > 0 && s.hits.size() > cap_total) out["hits"]["total"] = {{"value", cap_total}, {"relation", "gte"}};
    if (expire_scroll_after_pages > 0 && s.pages >= expire_scroll_after_pages) scrolls_.erase(id);
    return Resp{200, out.dump()};
  }

  Resp opensearch(const Req& r) {
    if (r.path == "/es/_search/scroll" && r.method == "DELETE") {
      json b = json::parse(r.body);
      for (auto& id : b["scroll_id"]) scrolls_.erase(id.get<std::string>());
      ++scrolls_cleared;
      return Resp{200, R"({"succeeded": true, "num_freed": 1})"};
    }
    if (r.path == "/es/_search/scroll" && r.method == "POST") {
      json b = json::parse(r.body);
      std::string id = b["scroll_id"];
      if (!scrolls_.count(id)) return error(404, "search_context_missing_exception", "No search context found for id [" + id + "]");
      return scroll_page(id);
    }
    bool hp = r.path == "/es/holdingpen-hep/_search";
    if ((!hp && r.path != "/es/records-hep/_search") || r.method != "POST" || !r.query.count("scroll"))
      return error(400, "illegal_argument_exception", "unexpected request " + r.method + " " + r.target);
    json q = json::parse(r.body);
    auto& filter = q["query"]["bool"]["filter"];
    const json& f0 = filter[0];
    json range = filter[1]["range"];
    std::string field = range.begin().key();
    std::string gte = range.begin().value()["gte"], lt = range.begin().value()["lt"];
    std::vector<json> hits;
    if (hp) {
      if (field != "metadata.acquisition_source.datetime" || f0 != json{{"term", {{"_extra_data.approved", false}}}})
        return error(400, "parsing_exception", "bad holdingpen query");
      for (auto& w : workflows) {
        std::string d = day(w["metadata"]["acquisition_source"]["datetime"]);
        if (w["_extra_data"]["approved"] == false && d >= gte && d < lt)
          hits.push_back({{"_index", "holdingpen-hep"}, {"_id", std::to_string(w["id"].get<long>())}, {"_score", nullptr}, {"_source", w}});
      }
    } else {
      if (field != "_created") return error(400, "parsing_exception", "bad records-hep query");
      bool want_core = f0.contains("term");
      for (auto& rec : literature) {
        std::string d = day(rec["_created"]);
        bool is_core = rec.contains("core") && rec["core"] == true;
        if (is_core == want_core && d >= gte && d < lt)
          hits.push_back({{"_index", "records-hep"}, {"_id", "uuid-" + std::to_string(rec["control_number"].get<long>())},
                          {"_score", nullptr}, {"_source", rec}});
      }
    }
    std::string id = "scroll-" + std::to_string(++next_scroll_);
    scrolls_[id] = Scroll{hits, 0, q["size"].get<std::size_t>(), 0};
    ++scrolls_opened;
    return scroll_page(id);
  }

  Resp api(const Req& r) {
    long size = std::stol(r.query.at("size")), page = std::stol(r.query.at("page"));
    if (page * size > api_max_results)
      return Resp{400, json{{"message", "Maximum search page size of `" + std::to_string(api_max_results) + "` results exceeded."},
                            {"status", 400}}.dump()};
    std::string q = r.query.at("q");
    if (q.rfind("da ", 0) != 0 || q.find("->") == std::string::npos) return Resp{400, R"({"message": "bad q"})"};
    std::string a = q.substr(3, 10), b = q.substr(q.find("->") + 2, 10);
    std::vector<json> all;
    for (auto& rec : literature) {
      std::string d = day(rec["_created"]);
      if (d >= a && d <= b) all.push_back(rec);
    }
    std::sort(all.begin(), all.end(), [](const json& x, const json& y) { return x["control_number"] > y["control_number"]; });
    json hits = json::array();
    for (long i = (page - 1) * size; i < page * size && i < long(all.size()); ++i) {
      json meta = all[i];
      std::string created = meta["_created"].get<std::string>() + "+00:00";
      meta.erase("_created");
      hits.push_back({{"id", std::to_string(meta["control_number"].get<long>())}, {"created", created}, {"updated", created},
                      {"metadata", meta}, {"links", {{"json", api_url() + "/literature/" + std::to_string(meta["control_number"].get<long>())}}}});
    }
    auto link = [&](long p) {
      std::string t = r.target;
      auto pos = t.find("page=" + std::to_string(page));
      t.replace(pos, 5 + std::to_string(page).size(), "page=" + std::to_string(p));
      return base() + t;
    };
    json links = {{"self", link(page)}};
    if (page * size < long(all.size())) links["next"] = link(page + 1);
    return Resp{200, json{{"hits", {{"hits", hits}, {"total", all.size()}}}, {"links", links}}.dump()};
  }
};

}  // namespace fake
