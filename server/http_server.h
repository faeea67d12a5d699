// server/http_server.h — a small HTTP/1.1 server for the REST API (Boost.Beast inside, hidden here).
//
// Threads: `io_threads` threads run the sockets (accept, read, parse, write) and any route
// marked Dispatch::kInline (cheap handlers such as a health check); a separate pool of
// `worker_threads` threads runs the routes marked Dispatch::kWorker (model predictions). So a
// health check answers at once even while every worker is busy.
//
// The transport answers by itself, always with a JSON body {"error": ..., "status": N}:
//   400 malformed HTTP, 404 unknown path, 405 known path with another method (Allow: header),
//   408 a request that does not arrive within read_timeout_s (a connection idle between
//   requests just closes), 413 a body over max_body_bytes (from Content-Length, before the body
//   is read), 503 when more than max_queue worker jobs are waiting or when accepting the body
//   would take the bodies held by all connections together over max_inflight_body_bytes.
// HEAD is answered for every GET route (same status and headers, no body). A handler that
// throws gives a 500 "internal error" whose details go to stderr, never to the client.
// Keep-alive is honoured; a stop() is graceful: the listening socket closes, idle connections
// close, requests in flight are answered, then run() returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query as sent, e.g. "/api/predict/coreness"
  std::string path;    // target without the query string
  std::string body;
  std::string content_type;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// A JSON error body: {"error": message, "status": status}.
HttpResponse json_error(int status, const std::string& message);

// Completes a request; may be called from any thread, exactly once.
using Respond = std::function<void(HttpResponse)>;

class HttpServer;

// A route handler. It may answer at once (respond(...)) or later from another thread.
using Handler = std::function<void(const HttpRequest&, Respond, HttpServer&)>;

enum class Dispatch {
  kInline,  // runs on the I/O thread: must be quick and must not block
  kWorker,  // runs on the worker pool
};

// Parses one complete HTTP/1.x request from `bytes` with the server's own parser settings
// (header and body limits). Returns 0 and fills `out` when it is complete and valid; otherwise
// the status the server would answer (400, 413, 431), with `error` set. (Used by the fuzzer.)
struct HttpServerOptions;
int parse_request(const char* data, std::size_t size, const HttpServerOptions& options,
                  HttpRequest& out, std::string& error);

struct HttpServerOptions {
  std::string host = "127.0.0.1";  // an IPv4/IPv6 literal, or "localhost"
  std::uint16_t port = 5000;       // 0 = any free port (see HttpServer::port())
  int io_threads = 1;
  int worker_threads = 1;
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_header_bytes = 16 << 10;
  int read_timeout_s = 30;    // a whole request (headers + body) must arrive within this
  // Request bodies held at once by all connections together (a body is counted from its
  // Content-Length, or max_body_bytes when chunked, until its answer is sent): memory stays
  // bounded whatever the number of slow clients. Bodies over 64 KiB may take only 3/4 of it, so
  // that ordinary small requests are still served while slow big uploads hold the rest.
  std::size_t max_inflight_body_bytes = 64u << 20;
  std::size_t max_queue = 4096;  // worker jobs waiting beyond this → 503
  std::string server_name = "inspire-classifier";
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();  // stops and joins if still running
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Register before start(). Exact path match.
  void route(const std::string& method, const std::string& path, Dispatch dispatch,
             Handler handler);

  // Binds and listens (throws std::runtime_error naming host:port on failure), then starts
  // the I/O and worker threads and returns.
  void start();
  // The bound port (useful with port 0).
  std::uint16_t port() const;
  // Blocks until the server has stopped (after stop()).
  void wait();
  // Graceful stop; safe from any thread, and more than once. Does not block.
  void stop();

  // Runs `job` on the worker pool. Returns false (and does not run it) when the queue is full.
  bool post_work(std::function<void()> job);
  // Jobs waiting or running on the worker pool.
  std::size_t pending_work() const;
  // Requests answered so far (any status).
  std::uint64_t requests_served() const;
  // Request-body bytes reserved right now by all connections (see max_inflight_body_bytes).
  std::size_t inflight_body_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace server
