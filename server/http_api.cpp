// server/http_api.cpp — request validation and fan-out for the coreness REST API.
#include "server/http_api.h"

#include <atomic>
#include <cstdio>
#include <chrono>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

namespace server {

namespace {

using nlohmann::json;

const char* type_name(const json& j) { return j.type_name(); }

HttpResponse ok_json(std::string body) {
  HttpResponse r;
  r.status = 200;
  r.body = std::move(body);
  return r;
}

// RFC 1123 date, as Flask's jsonify(datetime) writes it.
std::string http_date() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

struct Paper {
  std::string title, abstract;
};

// Parses a body; on failure fills `err` with the 400 answer.
std::optional<json> parse_body(const std::string& body, HttpResponse& err) {
  try {
    return json::parse(body);
  } catch (const json::parse_error& e) {
    // nlohmann's message names the position ("at line 1, column 12") and the problem
    // (including "ill-formed UTF-8 byte").
    std::string m = e.what();
    auto p = m.find("parse error");
    err = json_error(400, "malformed JSON request body: " + (p == std::string::npos ? m : m.substr(p)));
    return std::nullopt;
  } catch (const json::out_of_range&) {
    err = json_error(400, "malformed JSON request body: a number is out of range");
    return std::nullopt;
  } catch (const json::exception&) {
    err = json_error(400, "malformed JSON request body");
    return std::nullopt;
  }
}

// Validates one {"title", "abstract"} object; `where` prefixes field names ("" or "[3].").
std::optional<Paper> read_paper(const json& j, const std::string& where, HttpResponse& err) {
  if (!j.is_object()) {
    std::string field = where.empty() ? "body" : where.substr(0, where.size() - 1);
    err = field_error(field, (where.empty() ? std::string("request body") : field) +
                                 " must be a JSON object with string fields \"title\" and "
                                 "\"abstract\", got " + type_name(j));
    return std::nullopt;
  }
  Paper p;
  for (const char* name : {"title", "abstract"}) {
    std::string field = where + name;
    auto it = j.find(name);
    if (it == j.end()) {
      err = field_error(field, "missing field \"" + field + "\"");
      return std::nullopt;
    }
    if (!it->is_string()) {
      err = field_error(field, "field \"" + field + "\" must be a string, got " + type_name(*it));
      return std::nullopt;
    }
    (name[0] == 't' ? p.title : p.abstract) = it->get<std::string>();
  }
  return p;
}

HttpResponse predict_error(const std::exception& e, const std::string& field) {
  if (dynamic_cast<const std::invalid_argument*>(&e)) return field_error(field, e.what());
  // Internal details (paths, library messages) go to the log, not to the client.
  std::fprintf(stderr, "inspire-classifier: prediction failed: %s\n", e.what());
  return json_error(500, "prediction failed (internal error)");
}

// State shared by the items of one batch request.
struct BatchState {
  std::vector<Paper> papers;
  std::vector<std::string> out;
  std::atomic<std::size_t> remaining{0};
  std::mutex mu;
  std::optional<HttpResponse> failure;  // first failure wins
  Respond respond;
  std::shared_ptr<const CorenessApi> api;

  void run(std::size_t i) {
    try {
      out[i] = api->predict(papers[i].title, papers[i].abstract);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lk(mu);
      if (!failure) failure = predict_error(e, "[" + std::to_string(i) + "]");
    }
    if (remaining.fetch_sub(1) == 1) finish();
  }
  void finish() {
    if (failure) return respond(std::move(*failure));
    std::string body = "[";
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (i) body += ", ";
      body += out[i];
    }
    body += "]";
    respond(ok_json(std::move(body)));
  }
};

}  // namespace

HttpResponse field_error(const std::string& field, const std::string& message) {
  HttpResponse r;
  r.status = 422;
  nlohmann::ordered_json j;
  j["error"] = message;
  j["status"] = 422;
  j["field"] = field;
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

bool read_single_request(const std::string& body, std::string& title, std::string& abstract,
                         HttpResponse& err) {
  auto j = parse_body(body, err);
  if (!j) return false;
  auto paper = read_paper(*j, "", err);
  if (!paper) return false;
  title = std::move(paper->title);
  abstract = std::move(paper->abstract);
  return true;
}

bool read_batch_request(const std::string& body, std::size_t max_items,
                        std::vector<std::pair<std::string, std::string>>& papers,
                        HttpResponse& err) {
  auto j = parse_body(body, err);
  if (!j) return false;
  if (!j->is_array()) {
    err = field_error("body", std::string("request body must be a JSON list of objects "
                                          "{\"title\", \"abstract\"}, got ") +
                                  type_name(*j));
    return false;
  }
  if (j->size() > max_items) {
    err = field_error("body", "too many items in one batch: " + std::to_string(j->size()) +
                                  " (limit " + std::to_string(max_items) + ")");
    return false;
  }
  papers.clear();
  papers.reserve(j->size());
  for (std::size_t i = 0; i < j->size(); ++i) {
    auto p = read_paper((*j)[i], "[" + std::to_string(i) + "].", err);
    if (!p) return false;
    papers.emplace_back(std::move(p->title), std::move(p->abstract));
  }
  return true;
}

void add_coreness_routes(HttpServer& server, CorenessApi api_in) {
  if (!api_in.predict) throw std::invalid_argument("add_coreness_routes: no predict function");
  auto api = std::make_shared<const CorenessApi>(std::move(api_in));
  auto started = std::chrono::steady_clock::now();

  server.route("GET", "/api/health", Dispatch::kInline,
               [api, started](const HttpRequest&, Respond respond, HttpServer& srv) {
                 nlohmann::ordered_json j;
                 j["status"] = "ok";
                 j["date"] = http_date();
                 j["uptime_s"] = std::chrono::duration<double>(
                                     std::chrono::steady_clock::now() - started)
                                     .count();
                 j["queue"] = srv.pending_work();
                 j["requests_served"] = srv.requests_served();
                 for (auto& [k, v] : api->health_extra.items()) j[k] = v;
                 respond(ok_json(j.dump()));
               });

  server.route("POST", "/api/predict/coreness", Dispatch::kWorker,
               [api](const HttpRequest& req, Respond respond, HttpServer&) {
                 HttpResponse err;
                 std::string title, abstract;
                 if (!read_single_request(req.body, title, abstract, err))
                   return respond(std::move(err));
                 try {
                   respond(ok_json(api->predict(title, abstract)));
                 } catch (const std::exception& e) {
                   respond(predict_error(e, "body"));
                 }
               });

  server.route("POST", "/api/predict/coreness/batch", Dispatch::kWorker,
               [api](const HttpRequest& req, Respond respond, HttpServer& srv) {
                 HttpResponse err;
                 std::vector<std::pair<std::string, std::string>> items;
                 if (!read_batch_request(req.body, api->max_batch_items, items, err))
                   return respond(std::move(err));
                 auto st = std::make_shared<BatchState>();
                 st->papers.reserve(items.size());
                 for (auto& [t, a] : items) st->papers.push_back(Paper{std::move(t), std::move(a)});
                 items.clear();
                 const std::size_t n = st->papers.size();
                 if (n == 0) return respond(ok_json("[]"));
                 st->out.resize(n);
                 st->remaining = n;
                 st->respond = std::move(respond);
                 st->api = api;
                 // Items 1..n-1 go to the pool (or run here when the queue is full); item 0
                 // runs on this worker.
                 for (std::size_t i = 1; i < n; ++i)
                   if (!srv.post_work([st, i] { st->run(i); })) st->run(i);
                 st->run(0);
               });
}

}  // namespace server
