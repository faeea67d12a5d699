// server/http_api.h — INSPIRE's REST API for the coreness classifier, on server::HttpServer.
//
//   GET  /api/health                  {"status": "ok", "date": ..., "queue": n, ...extra}
//                                     (answered on the I/O thread: never waits for the model)
//   POST /api/predict/coreness        {"title": str, "abstract": str}
//                                     → {"prediction": label, "scores": {label: score, ...}}
//   POST /api/predict/coreness/batch  [{"title", "abstract"}, ...] → [prediction, ...] in order
//                                     (items are spread over the worker pool)
//
// Errors are JSON {"error": message, "status": N[, "field": name]}:
//   400 the body is not JSON (or not valid UTF-8), 422 a missing / wrongly typed field (named;
//   batch items as "[3].title"), 413/404/405/503 from the transport, 500 if the model throws.
// The model itself is injected (a function), so this layer is tested without one.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "server/http_server.h"

namespace server {

struct CorenessApi {
  // Predicts one paper and returns its JSON object text ({"prediction": ..., "scores": ...}).
  // Called concurrently from the worker threads. std::invalid_argument → 422, others → 500.
  std::function<std::string(const std::string& title, const std::string& abstract)> predict;
  // Extra members for the health answer (e.g. {"model": "...", "labels": [...]}).
  nlohmann::json health_extra = nlohmann::json::object();
  // Most items one batch request may hold (422 beyond).
  std::size_t max_batch_items = 10000;
};

// Registers the three routes. Call before server.start().
void add_coreness_routes(HttpServer& server, CorenessApi api);

// The 422 body: {"error": message, "status": 422, "field": field}.
HttpResponse field_error(const std::string& field, const std::string& message);

}  // namespace server
