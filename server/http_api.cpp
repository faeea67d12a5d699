// server/http_api.cpp — request validation and fan-out for the coreness REST API.
#include "server/http_api.h"

#include <atomic>
#include <cstdio>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <deque>
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

using Paper = PaperText;

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

HttpResponse predict_error(std::exception_ptr error, const std::string& field) {
  try {
    std::rethrow_exception(error);
  } catch (const std::invalid_argument& e) {
    return field_error(field, e.what());
  } catch (const std::exception& e) {
    // Internal details (paths, library messages) go to the log, not to the client.
    std::fprintf(stderr, "inspire-classifier: prediction failed: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "inspire-classifier: prediction failed: unknown exception\n");
  }
  return json_error(500, "prediction failed (internal error)");
}

// The papers waiting for a worker, from every request, in arrival order.
//
// A request queues its paper(s), then makes sure a drain() call comes after: it posts one to
// the worker pool (or, for a batch request, runs one itself). drain() takes up to n waiting
// papers at a time, in order, until the queue is empty, so a paper queued before a drain call
// starts is always taken, by that call or an earlier one. When the pool's queue is full, a
// single request takes its paper back (withdraw) and answers 503; if a drain already took it,
// that drain answers it.
class Batcher {
 public:
  struct Item {
    // A single request's body, read by the worker that takes the item (parsing stays off the
    // I/O thread); `reject` then answers a bad body (400 / 422). Batch items come already read.
    std::optional<std::string> body;
    std::function<void(HttpResponse)> reject;
    Paper paper;
    std::function<void(PaperResult)> done;  // called exactly once, on a worker thread
    std::uint64_t id = 0;
  };

  explicit Batcher(std::shared_ptr<const CorenessApi> api)
      : api_(std::move(api)), n_(api_->predict_many && api_->batch > 1 ? api_->batch : 1) {}

  std::size_t batch() const { return n_; }

  // Queues the items; returns the id of the last one.
  std::uint64_t push(std::vector<Item> items) {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& it : items) {
      it.id = ++next_id_;
      queue_.push_back(std::move(it));
    }
    return next_id_;
  }

  // Takes the item back if no drain has taken it yet (its drain call could not be made).
  bool withdraw(std::uint64_t id) {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it)
      if (it->id == id) {
        queue_.erase(it);
        return true;
      }
    return false;
  }

  void drain() {
    while (drain_once()) {
    }
  }

 private:
  // Takes and answers up to n waiting papers; false when there were none.
  bool drain_once() {
    std::vector<Item> take;
    {
      std::lock_guard<std::mutex> lk(mu_);
      while (!queue_.empty() && take.size() < n_) {
        take.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (take.empty()) return false;
    std::vector<Item> ready;
    ready.reserve(take.size());
    for (auto& it : take) {
      if (it.body) {
        HttpResponse err;
        if (!read_single_request(*it.body, it.paper.title, it.paper.abstract, err)) {
          try {
            it.reject(std::move(err));
          } catch (const std::exception& e) {
            std::fprintf(stderr, "inspire-classifier: sending an answer failed: %s\n", e.what());
          }
          continue;
        }
        it.body.reset();
      }
      ready.push_back(std::move(it));
    }
    if (ready.empty()) return true;
    std::vector<PaperResult> results = run(ready);
    for (std::size_t i = 0; i < ready.size(); ++i) {
      try {  // one answer that cannot be sent must not leave the others unanswered
        ready[i].done(std::move(results[i]));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "inspire-classifier: sending an answer failed: %s\n", e.what());
      }
    }
    return true;
  }

  std::vector<PaperResult> run(const std::vector<Item>& take) const {
    std::vector<PaperResult> out(take.size());
    if (n_ == 1) {
      for (std::size_t i = 0; i < take.size(); ++i) {
        try {
          out[i].json = api_->predict(take[i].paper.title, take[i].paper.abstract);
        } catch (...) {
          out[i].error = std::current_exception();
        }
      }
      return out;
    }
    std::vector<Paper> papers;
    papers.reserve(take.size());
    for (const auto& it : take) papers.push_back(it.paper);
    try {
      auto got = api_->predict_many(papers);
      if (got.size() != take.size())
        throw std::logic_error("predict_many returned " + std::to_string(got.size()) +
                               " results for " + std::to_string(take.size()) + " papers");
      return got;
    } catch (...) {  // the whole call failed: every paper of it gets the error
      auto e = std::current_exception();
      for (auto& r : out) r.error = e;
      return out;
    }
  }

  std::shared_ptr<const CorenessApi> api_;
  std::size_t n_;
  std::mutex mu_;
  std::deque<Item> queue_;
  std::uint64_t next_id_ = 0;
};

// State shared by the items of one batch request.
struct BatchState {
  std::vector<std::string> out;
  std::atomic<std::size_t> remaining{0};
  std::mutex mu;
  std::size_t failed_at = 0;
  std::optional<HttpResponse> failure;  // the failure of the lowest index wins
  Respond respond;

  void complete(std::size_t i, PaperResult r) {
    if (r.error) {
      HttpResponse e = predict_error(r.error, "[" + std::to_string(i) + "]");
      std::lock_guard<std::mutex> lk(mu);
      if (!failure || i < failed_at) failure = std::move(e), failed_at = i;
    } else {
      out[i] = std::move(r.json);
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

  auto batcher = std::make_shared<Batcher>(api);

  // Runs on the I/O thread: queues the request (its body is read later, by the worker that
  // takes it) and posts one drain call. Requests that arrive while every worker is busy thus
  // wait in the batcher's queue, where a free worker can take up to `batch` of them at once.
  server.route("POST", "/api/predict/coreness", Dispatch::kInline,
               [batcher](const HttpRequest& req, Respond respond, HttpServer& srv) {
                 std::vector<Batcher::Item> one(1);
                 one[0].body = req.body;
                 one[0].reject = respond;
                 one[0].done = [respond](PaperResult r) {
                   if (r.error) return respond(predict_error(r.error, "body"));
                   respond(ok_json(std::move(r.json)));
                 };
                 const std::uint64_t id = batcher->push(std::move(one));
                 if (!srv.post_work([batcher] { batcher->drain(); }) && batcher->withdraw(id)) {
                   auto busy = json_error(503, "server busy: too many requests waiting, retry later");
                   busy.headers.emplace_back("Retry-After", "1");
                   respond(std::move(busy));
                 }
               });

  server.route("POST", "/api/predict/coreness/batch", Dispatch::kWorker,
               [api, batcher](const HttpRequest& req, Respond respond, HttpServer& srv) {
                 HttpResponse err;
                 std::vector<std::pair<std::string, std::string>> items;
                 if (!read_batch_request(req.body, api->max_batch_items, items, err))
                   return respond(std::move(err));
                 const std::size_t n = items.size();
                 if (n == 0) return respond(ok_json("[]"));
                 auto st = std::make_shared<BatchState>();
                 st->out.resize(n);
                 st->remaining = n;
                 st->respond = std::move(respond);
                 std::vector<Batcher::Item> queued;
                 queued.reserve(n);
                 for (std::size_t i = 0; i < n; ++i) {
                   Batcher::Item it;
                   it.paper = Paper{std::move(items[i].first), std::move(items[i].second)};
                   it.done = [st, i](PaperResult r) { st->complete(i, std::move(r)); };
                   queued.push_back(std::move(it));
                 }
                 items.clear();
                 batcher->push(std::move(queued));
                 // Other workers may help (one drain call per further group of `batch` papers,
                 // skipped when the pool's queue is full); this worker drains too, so every
                 // paper is answered even if none of them could be posted.
                 const std::size_t groups = (n + batcher->batch() - 1) / batcher->batch();
                 for (std::size_t d = 1; d < groups; ++d)
                   if (!srv.post_work([batcher] { batcher->drain(); })) break;
                 batcher->drain();
               });
}

}  // namespace server
