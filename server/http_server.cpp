// server/http_server.cpp — HTTP/1.1 transport on Boost.Beast (header-only, links statically).
//
// One Session per TCP connection, all of its I/O on its own strand. A complete request is
// routed on the I/O thread; kWorker routes are posted to the worker pool, and their response
// is posted back to the session's strand. Every worker job holds a work guard on the
// io_context, so the I/O threads never leave run() while an answer is still being computed.
#include "server/http_server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

HttpResponse json_error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  nlohmann::ordered_json j;
  j["error"] = message;
  j["status"] = status;
  // Replace invalid UTF-8 (e.g. echoed from a bad request) rather than throwing.
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

namespace {

struct Route {
  std::string method;
  Dispatch dispatch;
  Handler handler;
};

class Session;

// The HttpRequest of a parsed message.
HttpRequest to_request(http::request<http::string_body>& msg) {
  HttpRequest req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  req.path = req.target.substr(0, req.target.find('?'));
  req.content_type = std::string(msg[http::field::content_type]);
  req.body = std::move(msg.body());
  return req;
}

void configure(http::request_parser<http::string_body>& p, const HttpServerOptions& o) {
  p.body_limit(o.max_body_bytes);
  p.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(o.max_header_bytes, UINT32_MAX)));
}

// The answer to a parse error (0: not one the transport answers).
HttpResponse parse_error_response(beast::error_code ec, const HttpServerOptions& o) {
  if (ec == http::error::body_limit)
    return json_error(413, "request body too large (limit " + std::to_string(o.max_body_bytes) +
                               " bytes)");
  if (ec == http::error::header_limit)
    return json_error(431, "request headers too large (limit " +
                               std::to_string(o.max_header_bytes) + " bytes)");
  return json_error(400, "malformed HTTP request: " + ec.message());
}

}  // namespace

int parse_request(const char* data, std::size_t size, const HttpServerOptions& options,
                  HttpRequest& out, std::string& error) {
  http::request_parser<http::string_body> p;
  configure(p, options);
  p.eager(true);
  beast::error_code ec;
  std::size_t used = 0;
  while (!ec && used < size && !p.is_done()) {
    std::size_t n = p.put(asio::buffer(data + used, size - used), ec);
    if (n == 0 && !ec) break;
    used += n;
  }
  if (!ec && !p.is_done()) {
    error = "incomplete HTTP request";
    return 400;
  }
  if (ec) {
    auto r = parse_error_response(ec, options);
    error = r.body;
    return r.status;
  }
  out = to_request(p.get());
  return 0;
}

struct HttpServer::Impl {
  HttpServer* self = nullptr;
  HttpServerOptions opt;
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::unique_ptr<asio::thread_pool> workers;
  std::vector<std::thread> io_threads;
  std::map<std::string, std::vector<Route>> routes;
  std::atomic<bool> started{false}, stopping{false}, joined{false};
  std::atomic<std::size_t> pending{0};
  std::atomic<std::uint64_t> served{0};
  std::atomic<std::size_t> inflight_body{0};
  std::uint16_t bound_port = 0;
  std::mutex sessions_mu;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  std::mutex join_mu;

  // Reserves n body bytes from the shared budget; false when it would go over. Bodies over
  // kSmallBody may fill only 3/4 of the budget: the rest stays for ordinary (small) requests,
  // so that slow clients with big bodies cannot starve normal traffic.
  static constexpr std::size_t kSmallBody = 64 << 10;
  bool reserve_body(std::size_t n) {
    const std::size_t max = opt.max_inflight_body_bytes;
    const std::size_t limit = n <= kSmallBody ? max : max - max / 4;
    std::size_t cur = inflight_body.load();
    do {
      if (n > limit || cur > limit - n) return false;
    } while (!inflight_body.compare_exchange_weak(cur, cur + n));
    return true;
  }
  void release_body(std::size_t n) { inflight_body.fetch_sub(n); }

  void do_accept();
  void on_stop();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, HttpServer::Impl& srv)
      : srv_(srv), stream_(std::move(socket)), timer_(stream_.get_executor()) {}

  void start() {
    {
      std::lock_guard<std::mutex> lk(srv_.sessions_mu);
      srv_.sessions[this] = weak_from_this();
    }
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }
  ~Session() {
    release_body();
    std::lock_guard<std::mutex> lk(srv_.sessions_mu);
    srv_.sessions.erase(this);
  }

  // Called on stop(): an idle connection (waiting for its next request) closes now; a busy
  // one closes after its answer is written.
  void close_if_idle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->busy_) self->hard_close();
    });
  }

 private:
  void release_body() {
    if (reserved_) srv_.release_body(reserved_);
    reserved_ = 0;
  }

  void do_read() {
    if (srv_.stopping) return hard_close();
    release_body();
    head_ = false;
    timed_out_ = false;
    parser_.emplace();
    configure(*parser_, srv_.opt);
    // The whole request must arrive within read_timeout_s: our own timer (not the stream's),
    // so that the socket stays open for a 408 answer.
    stream_.expires_never();
    timer_.expires_after(std::chrono::seconds(srv_.opt.read_timeout_s));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return;  // cancelled: the request arrived in time
      self->timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_header(ec);
                            });
  }

  // Headers are in: refuse a body over the limits before reading any of it.
  void on_header(beast::error_code ec) {
    if (ec) return on_read(ec);
    auto& p = *parser_;
    std::size_t need = 0;
    if (auto cl = p.content_length()) {
      need = static_cast<std::size_t>(*cl);
    } else if (p.chunked()) {
      need = srv_.opt.max_body_bytes;
    }
    if (need > 0) {
      if (!srv_.reserve_body(need)) {
        timer_.cancel();
        busy_ = true;
        auto res = json_error(503, "server busy: too much request data in flight, retry later");
        res.headers.emplace_back("Retry-After", "1");
        return send(std::move(res), true);
      }
      reserved_ = need;
    }
    if (p.is_done()) return on_read({});
    http::async_read(stream_, buffer_, p,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    timer_.cancel();
    if (ec && timed_out_) {
      // Idle between requests: just close. Part of a request arrived: tell the client.
      if (!parser_->got_some() && buffer_.size() == 0) return hard_close();
      busy_ = true;
      return send(json_error(408, "request not received within " +
                                      std::to_string(srv_.opt.read_timeout_s) + " s"),
                  true);
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == beast::error::timeout || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset || ec == asio::error::bad_descriptor) {
      return hard_close();
    }
    busy_ = true;
    if (ec) return send(parse_error_response(ec, srv_.opt), true);

    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    HttpRequest req = to_request(msg);
    head_ = req.method == "HEAD";
    route(std::move(req));
  }

  void route(HttpRequest req) {
    auto it = srv_.routes.find(req.path);
    if (it == srv_.routes.end())
      return send(json_error(404, "no such endpoint: " + req.path), !keep_alive_);
    const Route* match = nullptr;
    const std::string& method = head_ ? std::string("GET") : req.method;
    std::string allow;
    bool has_get = false;
    for (auto& r : it->second) {
      if (r.method == method) match = &r;
      allow += (allow.empty() ? "" : ", ") + r.method;
      has_get = has_get || r.method == "GET";
    }
    if (has_get) allow += ", HEAD";
    if (!match) {
      auto res = json_error(405, "method " + req.method + " not allowed on " + req.path +
                                     " (allowed: " + allow + ")");
      res.headers.emplace_back("Allow", allow);
      return send(std::move(res), !keep_alive_);
    }

    // The answer may come from another thread: hop back onto this session's strand, once.
    auto once = std::make_shared<std::atomic<bool>>(false);
    Respond respond = [self = shared_from_this(), once](HttpResponse res) {
      if (once->exchange(true)) return;
      asio::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable {
        self->send(std::move(res), !self->keep_alive_);
      });
    };
    const Handler& handler = match->handler;
    HttpServer& server = *srv_.self;
    // A handler's exception is a bug or an unexpected fault: its text (paths, internals) goes
    // to the log, the client gets a plain 500.
    auto internal = [](const HttpRequest& r, const char* what) {
      std::fprintf(stderr, "inspire-classifier: internal error on %s %s: %s\n",
                   r.method.c_str(), r.path.c_str(), what);
      return json_error(500, "internal error");
    };
    if (match->dispatch == Dispatch::kInline) {
      try {
        handler(req, respond, server);
      } catch (const std::exception& e) {
        respond(internal(req, e.what()));
      }
      return;
    }
    auto shared_req = std::make_shared<HttpRequest>(std::move(req));
    bool queued = server.post_work([shared_req, respond, &handler, &server, internal] {
      try {
        handler(*shared_req, respond, server);
      } catch (const std::exception& e) {
        respond(internal(*shared_req, e.what()));
      } catch (...) {
        respond(internal(*shared_req, "unknown exception"));
      }
    });
    if (!queued) {
      auto res = json_error(503, "server busy: too many requests waiting, retry later");
      res.headers.emplace_back("Retry-After", "1");
      respond(std::move(res));
    }
  }

  // Runs on the strand.
  void send(HttpResponse r, bool close) {
    if (srv_.stopping) close = true;
    if (close) release_body();  // nothing more is read from this connection
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(r.status));
    res->set(http::field::server, srv_.opt.server_name);
    res->set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) res->set(k, v);
    res->keep_alive(!close);
    res->body() = std::move(r.body);
    res->prepare_payload();
    srv_.served.fetch_add(1, std::memory_order_relaxed);
    stream_.expires_after(std::chrono::seconds(30));
    auto done = [self = shared_from_this(), res, close](beast::error_code ec, std::size_t) {
      self->busy_ = false;
      if (ec) return self->hard_close();
      if (close) return self->graceful_close();
      self->do_read();
    };
    if (head_) {
      // HEAD: the GET answer's status and headers (Content-Length included), no body.
      auto sr = std::make_shared<http::response_serializer<http::string_body>>(*res);
      http::async_write_header(stream_, *sr,
                               [sr, done = std::move(done)](beast::error_code ec, std::size_t n) {
                                 done(ec, n);
                               });
      return;
    }
    http::async_write(stream_, *res, std::move(done));
  }

  // Half-close, then discard whatever the client still sends (e.g. the rest of a body that
  // was too large) until it closes, so that it reads our answer instead of a reset.
  void graceful_close() {
    release_body();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    drained_ = 0;
    drain();
  }
  void drain() {
    stream_.expires_after(std::chrono::seconds(2));
    stream_.async_read_some(asio::buffer(scratch_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > (64u << 20)) return self->hard_close();
                              self->drain();
                            });
  }
  void hard_close() {
    release_body();
    timer_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  HttpServer::Impl& srv_;
  beast::tcp_stream stream_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
  bool busy_ = false;
  bool head_ = false;
  bool timed_out_ = false;
  std::size_t reserved_ = 0;
  std::size_t drained_ = 0;
  char scratch_[4096];
};

}  // namespace

void HttpServer::Impl::do_accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (stopping || !acceptor.is_open()) return;
    if (!ec) {
      std::make_shared<Session>(std::move(socket), *this)->start();
    } else if (ec == asio::error::no_descriptors) {
      // Out of file descriptors: back off briefly instead of spinning.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    do_accept();
  });
}

void HttpServer::Impl::on_stop() {
  beast::error_code ec;
  acceptor.close(ec);
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard<std::mutex> lk(sessions_mu);
    for (auto& [p, w] : sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (auto& s : live) s->close_if_idle();
}

HttpServer::HttpServer(HttpServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->self = this;
  impl_->opt = std::move(options);
  if (impl_->opt.io_threads < 1) impl_->opt.io_threads = 1;
  if (impl_->opt.worker_threads < 1) impl_->opt.worker_threads = 1;
  if (impl_->opt.read_timeout_s < 1) impl_->opt.read_timeout_s = 1;
}

HttpServer::~HttpServer() {
  if (impl_->started) {
    stop();
    wait();
  }
}

void HttpServer::route(const std::string& method, const std::string& path, Dispatch dispatch,
                       Handler handler) {
  if (impl_->started) throw std::logic_error("HttpServer::route: server already started");
  impl_->routes[path].push_back(Route{method, dispatch, std::move(handler)});
}

void HttpServer::start() {
  if (impl_->started) throw std::logic_error("HttpServer::start: already started");
  auto& o = impl_->opt;
  std::string host = o.host == "localhost" ? "127.0.0.1" : o.host;
  std::string where = o.host + ":" + std::to_string(o.port);
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + where +
                             ": host must be an IP address such as 127.0.0.1, 0.0.0.0 or ::1");
  tcp::endpoint ep(addr, o.port);
  auto& acc = impl_->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
  impl_->bound_port = acc.local_endpoint().port();

  impl_->workers = std::make_unique<asio::thread_pool>(o.worker_threads);
  impl_->started = true;
  impl_->do_accept();
  for (int i = 0; i < o.io_threads; ++i)
    impl_->io_threads.emplace_back([this] { impl_->ioc.run(); });
}

std::uint16_t HttpServer::port() const { return impl_->bound_port; }

void HttpServer::stop() {
  if (!impl_->started || impl_->stopping.exchange(true)) return;
  asio::post(impl_->ioc, [impl = impl_.get()] { impl->on_stop(); });
}

void HttpServer::wait() {
  std::lock_guard<std::mutex> lk(impl_->join_mu);
  if (!impl_->started || impl_->joined) return;
  for (auto& t : impl_->io_threads) t.join();
  impl_->workers->join();
  impl_->joined = true;
}

bool HttpServer::post_work(std::function<void()> job) {
  auto& im = *impl_;
  if (im.pending.fetch_add(1) >= im.opt.max_queue) {
    im.pending.fetch_sub(1);
    return false;
  }
  asio::post(*im.workers, [job = std::move(job), guard = asio::make_work_guard(im.ioc), &im] {
    try {
      job();
    } catch (...) {
    }
    im.pending.fetch_sub(1);
  });
  return true;
}

std::size_t HttpServer::pending_work() const { return impl_->pending.load(); }
std::size_t HttpServer::inflight_body_bytes() const { return impl_->inflight_body.load(); }
std::uint64_t HttpServer::requests_served() const { return impl_->served.load(); }

}  // namespace server
