// tools/cmd_serve.cpp — `serve`: INSPIRE's REST API for the classifier (server/http_api.h).
#include <omp.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <cstdint>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "io/sha256.h"
#include "server/http_api.h"
#include "server/http_server.h"
#include "tools/cli.h"
#include "ulmfit/classifier.h"
#include "ulmfit/default_model.h"

#ifndef INSPIRE_VERSION
#define INSPIRE_VERSION "0.0.0"
#endif

namespace {

int run_serve(int argc, char** argv) {
  CLI::App app(
      "Serve the classifier over HTTP (INSPIRE's REST API):\n"
      "  POST /api/predict/coreness        {\"title\": ..., \"abstract\": ...} -> "
      "{\"prediction\": ..., \"scores\": {...}}\n"
      "  POST /api/predict/coreness/batch  [{\"title\", \"abstract\"}, ...] -> [..., ...]\n"
      "  GET  /api/health\n"
      "Errors are JSON with status 400 (bad JSON / UTF-8), 422 (missing or wrongly typed field), "
      "408 (request too slow), 413 (body too large), 404, 405, 503 (queue full, or too much request "
      "data in flight). Stops gracefully on SIGINT/SIGTERM.",
      "inspire-classifier serve");
  server::HttpServerOptions o;
  std::string model;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  if (threads < 1) threads = 1;
  std::size_t max_batch = 10000;
  std::size_t batch = 1;
  o.max_body_bytes = 8u << 20;
  app.add_option("--host", o.host, "address to listen on (an IP; 0.0.0.0 = all interfaces)")
      ->capture_default_str();
  app.add_option("-p,--port", o.port, "TCP port (0 = any free port)")->capture_default_str();
  app.add_option("-m,--model", model,
                 "model bundle (.safetensors); default: the model embedded in this build");
  app.add_option("-t,--threads", threads, "prediction worker threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--io-threads", o.io_threads, "threads handling connections")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--max-body", o.max_body_bytes, "largest request body in bytes (larger: 413)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(16), std::size_t(1) << 32));
  app.add_option("--max-inflight-bytes", o.max_inflight_body_bytes,
                 "request-body bytes all connections may hold together (more: 503); bounds "
                 "the server's memory whatever the number of slow clients")
      ->capture_default_str();
  app.add_option("--max-batch", max_batch, "most papers in one batch request (more: 422)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 24));
  app.add_option("--batch", batch,
                 "most papers one worker runs through the model together: papers that wait for "
                 "a worker (concurrent requests, batch items) are padded into one batch, which "
                 "raises throughput under load; 1 = each paper alone, exactly as "
                 "predict-coreness. Scores then move by about 1e-6 with the company a paper "
                 "keeps; no request ever waits for a batch to fill")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(256)));
  app.add_option("--max-queue", o.max_queue,
                 "most predictions waiting for a worker (more: 503)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 24));
  app.add_option("--timeout", o.read_timeout_s,
                 "seconds a client has to send a whole request; idle keep-alive connections "
                 "close after it too")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  ulmfit::LoadOptions load_opt;
  cli::add_load_options(app, load_opt);
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  o.worker_threads = threads;

  auto clf = ulmfit::Classifier::load_or_default(model, load_opt);

  // Handle SIGINT/SIGTERM on this thread only: block them before any other thread starts (the
  // server's threads inherit the mask), then wait for one with sigwait.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  // A client that disconnects early must not kill the process.
  signal(SIGPIPE, SIG_IGN);

  server::HttpServer server(o);
  server::CorenessApi api;
  api.predict = [clf](const std::string& title, const std::string& abstract) {
    omp_set_num_threads(1);  // parallelism comes from the worker pool, one paper per worker
    return clf.to_json(clf.predict_coreness(title, abstract));
  };
  // --batch N: the papers one worker takes at once run as one padded batch
  // (Classifier::predict_each), each failing alone: one bad paper (e.g. invalid UTF-8) gets its
  // 422 while the others of the batch are answered.
  api.batch = batch;
  if (batch > 1)
    api.predict_many = [clf, batch](const std::vector<server::PaperText>& papers) {
      std::vector<ulmfit::Paper> in;
      in.reserve(papers.size());
      for (auto& p : papers) in.push_back({p.title, p.abstract});
      auto each = clf.predict_each(in, /*threads=*/1, static_cast<int>(batch));
      std::vector<server::PaperResult> out(each.size());
      for (std::size_t i = 0; i < each.size(); ++i) {
        out[i].error = each[i].error;
        if (!each[i].error) out[i].json = clf.to_json(each[i].prediction);
      }
      return out;
    };
  api.max_batch_items = max_batch;
  // The health answer names the model and its digest, never its path on this machine.
  std::string model_name, model_digest;
  if (model.empty()) {
    model_name = clf.source();  // "embedded:<name>"
    auto bytes = ulmfit::default_model_bytes();
    model_digest = io::sha256_hex(bytes.data(), bytes.size());
  } else {
    model_name = std::filesystem::path(model).filename().string();
    model_digest = io::sha256_file_hex(model);
  }
  api.health_extra = {{"model", model_name},
                      {"model_sha256", model_digest},
                      {"labels", clf.labels()},
                      {"temperature", clf.temperature()},
                      {"vocab_size", clf.vocab_size()},
                      {"workers", threads},
                      {"batch", batch},
                      {"version", INSPIRE_VERSION}};
  server::add_coreness_routes(server, api);
  server.start();
  std::printf("inspire-classifier: serving %s on http://%s:%u with %d worker thread%s%s "
              "(Ctrl-C to stop)\n",
              clf.source().c_str(), o.host.find(':') != std::string::npos
                                        ? ("[" + o.host + "]").c_str()
                                        : o.host.c_str(),
              static_cast<unsigned>(server.port()), threads, threads == 1 ? "" : "s",
              batch > 1 ? (", batches of up to " + std::to_string(batch)).c_str() : "");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  std::fprintf(stderr, "inspire-classifier: %s received, finishing requests in flight...\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  server.stop();
  server.wait();
  std::fprintf(stderr, "inspire-classifier: stopped after %llu requests\n",
               static_cast<unsigned long long>(server.requests_served()));
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(serve, "Serve the REST API (POST /api/predict/coreness, batch, health)",
                        run_serve, 32);
