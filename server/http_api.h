// server/http_api.h — INSPIRE's REST API for the coreness classifier, on server::HttpServer.
//
//   GET  /api/health                  {"status": "ok", "date": ..., "queue": n, ...extra}
//                                     (answered on the I/O thread: never waits for the model)
//   POST /api/predict/coreness        {"title": str, "abstract": str}
//                                     → {"prediction": label, "scores": {label: score, ...}}
//   POST /api/predict/coreness/batch  [{"title", "abstract"}, ...] → [prediction, ...] in order
//                                     (items are spread over the worker pool)
//
// Papers wait in one FIFO queue, whichever route brought them. A worker that becomes free takes
// up to `batch` waiting papers at once: with batch 1 (the default) each runs alone through
// `predict`; with batch > 1 they run together through `predict_many` (the model pads them into
// one batch, which is faster under load). Nothing waits on purpose for a batch to fill: a lone
// request runs at once, and batches form only while the workers are busy.
//
// Errors are JSON {"error": message, "status": N[, "field": name]}:
//   400 the body is not JSON (or not valid UTF-8, or holds a number out of range), 422 a missing
//   / wrongly typed field (named; batch items as "[3].title"), 408/413/404/405/503 from the
//   transport, 500 if the model throws (its message goes to stderr, not to the client).
// The model itself is injected (a function), so this layer is tested without one.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/http_server.h"

namespace server {

struct PaperText {
  std::string title, abstract;
};

// One paper's answer from predict_many: its JSON object text, or the exception it raised
// (std::invalid_argument → 422 for that paper, others → 500).
struct PaperResult {
  std::string json;
  std::exception_ptr error;
};

struct CorenessApi {
  // Predicts one paper and returns its JSON object text ({"prediction": ..., "scores": ...}).
  // Called concurrently from the worker threads. std::invalid_argument → 422, others → 500.
  std::function<std::string(const std::string& title, const std::string& abstract)> predict;
  // Optional: several papers in one call, one result per paper in the same order (a paper's
  // failure must not fail the others). Used instead of `predict` when batch > 1.
  std::function<std::vector<PaperResult>(const std::vector<PaperText>& papers)> predict_many;
  // Most papers one worker takes from the queue at once (1: each paper alone).
  std::size_t batch = 1;
  // Extra members for the health answer (e.g. {"model": "...", "labels": [...]}).
  nlohmann::json health_extra = nlohmann::json::object();
  // Most items one batch request may hold (422 beyond).
  std::size_t max_batch_items = 10000;
};

// Registers the three routes. Call before server.start().
void add_coreness_routes(HttpServer& server, CorenessApi api);

// The request validation of the two predict routes, on their own (the routes and the fuzzer use
// them): true and the paper(s), or false and the 400 / 422 answer in `err`. A JSON number out
// of range (1e99999) is a 400 like any malformed body.
bool read_single_request(const std::string& body, std::string& title, std::string& abstract,
                         HttpResponse& err);
bool read_batch_request(const std::string& body, std::size_t max_items,
                        std::vector<std::pair<std::string, std::string>>& papers,
                        HttpResponse& err);

// The 422 body: {"error": message, "status": 422, "field": field}.
HttpResponse field_error(const std::string& field, const std::string& message);

}  // namespace server
