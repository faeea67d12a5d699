// harvest/http_client.cpp — see http_client.h.
#include "harvest/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <thread>

namespace harvest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

std::string Url::origin() const {
  std::string o = scheme + "://" + host;
  if (!((scheme == "http" && port == "80") || (scheme == "https" && port == "443"))) o += ":" + port;
  return o;
}
std::string Url::str() const { return origin() + target; }

Url parse_url(const std::string& s) {
  Url u;
  auto p = s.find("://");
  if (p == std::string::npos) throw std::invalid_argument("not a URL (expected http(s)://host...): '" + s + "'");
  u.scheme = s.substr(0, p);
  std::transform(u.scheme.begin(), u.scheme.end(), u.scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (u.scheme != "http" && u.scheme != "https")
    throw std::invalid_argument("unsupported URL scheme '" + u.scheme + "' (use http or https)");
  std::string rest = s.substr(p + 3);
  auto slash = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (auto h = u.target.find('#'); h != std::string::npos) u.target.resize(h);
  if (u.target.empty() || u.target[0] != '/') u.target = "/" + u.target;
  if (authority.find('@') != std::string::npos)
    throw std::invalid_argument(
        "the URL holds credentials (user:password@host): give them in the environment "
        "(ES_USERNAME / ES_PASSWORD) instead");
  if (!authority.empty() && authority[0] == '[') {  // IPv6 literal
    auto close = authority.find(']');
    if (close == std::string::npos) throw std::invalid_argument("bad IPv6 host in URL '" + s + "'");
    u.host = authority.substr(1, close - 1);
    std::string tail = authority.substr(close + 1);
    if (!tail.empty()) {
      if (tail[0] != ':') throw std::invalid_argument("bad host in URL '" + s + "'");
      u.port = tail.substr(1);
    }
  } else {
    auto colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) u.port = authority.substr(colon + 1);
  }
  if (u.host.empty()) throw std::invalid_argument("no host in URL '" + s + "'");
  if (u.port.empty()) {
    u.port = u.https() ? "443" : "80";
  } else {
    bool digits = u.port.size() <= 5 && std::all_of(u.port.begin(), u.port.end(), [](unsigned char c) { return std::isdigit(c); });
    if (!digits || std::stoi(u.port) < 1 || std::stoi(u.port) > 65535)
      throw std::invalid_argument("bad port '" + u.port + "' in URL '" + s + "'");
  }
  return u;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string o;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      o += char(c);
    } else {
      o += '%';
      o += hex[c >> 4];
      o += hex[c & 15];
    }
  }
  return o;
}

std::string base64_encode(std::string_view s) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  std::size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    unsigned v = (unsigned char)s[i] << 16 | (unsigned char)s[i + 1] << 8 | (unsigned char)s[i + 2];
    o += tbl[v >> 18 & 63], o += tbl[v >> 12 & 63], o += tbl[v >> 6 & 63], o += tbl[v & 63];
  }
  if (i + 1 == s.size()) {
    unsigned v = (unsigned char)s[i] << 16;
    o += tbl[v >> 18 & 63], o += tbl[v >> 12 & 63], o += "==";
  } else if (i + 2 == s.size()) {
    unsigned v = (unsigned char)s[i] << 16 | (unsigned char)s[i + 1] << 8;
    o += tbl[v >> 18 & 63], o += tbl[v >> 12 & 63], o += tbl[v >> 6 & 63], o += '=';
  }
  return o;
}

std::string HttpResponse::header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

namespace {

// Runs one asynchronous operation to completion on `ioc`; returns its error code.
template <class Start>
beast::error_code run_op(asio::io_context& ioc, Start start) {
  beast::error_code result = asio::error::would_block;
  start([&](beast::error_code ec, auto&&...) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

std::string describe_ec(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  if (ec == http::error::partial_message || ec == http::error::end_of_stream || ec == asio::error::eof ||
      ec == asio::ssl::error::stream_truncated)
    return "connection closed before the whole response arrived (truncated response)";
  if (ec == http::error::body_limit) return "response body too large";
  return ec.message();
}

template <class Stream>
HttpResponse exchange(asio::io_context& ioc, Stream& stream, beast::tcp_stream& lowest,
                      http::request<http::string_body>& req, const ClientOptions& opt, const Url& url,
                      const std::string& method) {
  auto timeout = std::chrono::milliseconds(std::int64_t(opt.timeout_s * 1000));
  auto fail = [&](const char* what, const beast::error_code& ec) {
    return NetworkError(method + " " + url.str() + ": " + what + ": " + describe_ec(ec));
  };
  lowest.expires_after(timeout);
  if (auto ec = run_op(ioc, [&](auto h) { http::async_write(stream, req, h); })) throw fail("sending the request", ec);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(opt.max_body_bytes);
  lowest.expires_after(timeout);
  if (auto ec = run_op(ioc, [&](auto h) { http::async_read(stream, buf, parser, h); }))
    throw fail("reading the response", ec);
  auto& res = parser.get();
  HttpResponse out;
  out.status = int(res.result_int());
  out.body = std::move(res.body());
  for (auto& f : res) {
    std::string k(f.name_string());
    std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
    out.headers.emplace_back(std::move(k), std::string(f.value()));
  }
  return out;
}

}  // namespace

HttpResponse http_request(const ClientOptions& opt, const std::string& method, const Url& url,
                          const std::string& body, const std::string& content_type) {
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(url.host, url.port, ec);
  if (ec) throw NetworkError(method + " " + url.str() + ": cannot resolve host '" + url.host + "': " + ec.message());

  http::request<http::string_body> req;
  req.method(http::string_to_verb(method));
  if (req.method() == http::verb::unknown) throw std::invalid_argument("unknown HTTP method " + method);
  req.method_string(method);
  req.target(url.target);
  req.version(11);
  req.set(http::field::host, url.host + ((url.port == "80" || url.port == "443") ? "" : ":" + url.port));
  req.set(http::field::user_agent, opt.user_agent);
  req.set(http::field::accept, "application/json");
  req.set(http::field::connection, "close");
  if (!opt.basic_auth.empty()) req.set(http::field::authorization, "Basic " + base64_encode(opt.basic_auth));
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type.empty() ? "application/json" : content_type);
    req.body() = body;
  }
  req.prepare_payload();
  auto timeout = std::chrono::milliseconds(std::int64_t(opt.timeout_s * 1000));

  if (!url.https()) {
    beast::tcp_stream stream(ioc);
    stream.expires_after(timeout);
    if (auto e = run_op(ioc, [&](auto h) { stream.async_connect(endpoints, h); }))
      throw NetworkError(method + " " + url.str() + ": cannot connect: " + describe_ec(e));
    auto r = exchange(ioc, stream, stream, req, opt, url, method);
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    return r;
  }

  ssl::context ctx(ssl::context::tls_client);
  try {
    if (!opt.ca_cert.empty()) ctx.load_verify_file(opt.ca_cert);
    else ctx.set_default_verify_paths();
  } catch (const std::exception& e) {
    throw HarvestError("cannot load CA certificates" + (opt.ca_cert.empty() ? std::string() : " from '" + opt.ca_cert + "'") +
                       ": " + e.what());
  }
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()))
    throw NetworkError(method + " " + url.str() + ": cannot set the TLS server name");
  stream.set_verify_callback(ssl::host_name_verification(url.host));
  auto& lowest = beast::get_lowest_layer(stream);
  lowest.expires_after(timeout);
  if (auto e = run_op(ioc, [&](auto h) { lowest.async_connect(endpoints, h); }))
    throw NetworkError(method + " " + url.str() + ": cannot connect: " + describe_ec(e));
  lowest.expires_after(timeout);
  if (auto e = run_op(ioc, [&](auto h) { stream.async_handshake(ssl::stream_base::client, h); }))
    throw NetworkError(method + " " + url.str() + ": TLS handshake failed: " + describe_ec(e) +
                       (opt.ca_cert.empty() ? " (a private CA? give it with --ca-cert)" : ""));
  return exchange(ioc, stream, lowest, req, opt, url, method);
}

double parse_retry_after(const std::string& value) {
  std::string v = value;
  while (!v.empty() && std::isspace((unsigned char)v.back())) v.pop_back();
  while (!v.empty() && std::isspace((unsigned char)v.front())) v.erase(v.begin());
  if (v.empty()) return -1;
  if (std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c); }))
    return v.size() > 9 ? -1 : double(std::stol(v));
  std::tm tm{};
  const char* end = strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end) return -1;
  double d = std::difftime(timegm(&tm), std::time(nullptr));
  return d < 0 ? 0 : d;
}

namespace {
std::string seconds_str(double s) {
  char b[32];
  std::snprintf(b, sizeof b, s < 10 ? "%.1f s" : "%.0f s", s);
  return b;
}
std::string after(int attempts) { return attempts > 1 ? " (after " + std::to_string(attempts) + " attempts)" : ""; }
}  // namespace

Fetcher::Fetcher(ClientOptions client, RetryPolicy retry, RateLimit rate, LogFn warn)
    : client_(std::move(client)), retry_(retry), rate_(rate), warn_(std::move(warn)) {}

void Fetcher::wait(double seconds) const {
  double s = seconds * retry_.time_scale;
  if (s > 0) std::this_thread::sleep_for(std::chrono::microseconds(std::int64_t(s * 1e6)));
}

void Fetcher::throttle() {
  if (rate_.max_requests <= 0) return;
  using clock = std::chrono::steady_clock;
  auto window = std::chrono::microseconds(std::int64_t(rate_.window_s * retry_.time_scale * 1e6));
  for (;;) {
    auto now = clock::now();
    while (!recent_.empty() && now - recent_.front() >= window) recent_.pop_front();
    if (int(recent_.size()) < rate_.max_requests) break;
    std::this_thread::sleep_until(recent_.front() + window);
  }
  recent_.push_back(clock::now());
}

HttpResponse Fetcher::fetch(const std::string& method, const std::string& url_str, const std::string& body,
                            const std::string& content_type) {
  Url url = parse_url(url_str);
  int attempts = 0, n429 = 0;
  for (;;) {
    throttle();
    ++requests_;
    ++attempts;
    std::string problem;
    HttpResponse r;
    bool transport_failed = false;
    try {
      r = http_request(client_, method, url, body, content_type);
    } catch (const NetworkError& e) {
      if (attempts >= retry_.max_attempts)
        throw NetworkError(std::string(e.what()) + after(attempts));
      problem = e.what();
      transport_failed = true;
    }
    if (!transport_failed) {
      if (r.status >= 200 && r.status < 300) return r;
      std::string snippet = r.body.substr(0, 300);
      for (auto& c : snippet)
        if (c == '\n' || c == '\r') c = ' ';
      std::string msg = method + " " + url.str() + ": HTTP " + std::to_string(r.status);
      if (r.status >= 500 && attempts >= retry_.max_attempts) msg += after(attempts);
      if (r.status == 401 || r.status == 403)
        msg += " (authentication refused: check ES_USERNAME / ES_PASSWORD, or that this account may read the index)";
      if (!snippet.empty()) msg += ": " + snippet;
      if (r.status == 429) {
        if (++n429 > retry_.max_429)
          throw HttpStatusError(429, msg + " (rate limited " + std::to_string(n429) + " times; giving up)");
        double ra = parse_retry_after(r.header("retry-after"));
        if (ra < 0) ra = retry_.default_retry_after_s;
        ra = std::min(ra, 3600.0);
        if (warn_) warn_("rate limited (HTTP 429) by " + url.origin() + "; waiting " + seconds_str(ra * retry_.time_scale));
        --attempts;  // a 429 is not a failed attempt
        wait(ra);
        continue;
      }
      if (r.status < 500 || attempts >= retry_.max_attempts) throw HttpStatusError(r.status, msg);
      problem = msg;
    }
    double delay = std::min(retry_.max_delay_s, retry_.base_delay_s * std::pow(2.0, attempts - 1));
    if (warn_)
      warn_(problem + "; retrying in " + seconds_str(delay * retry_.time_scale) + " (attempt " +
            std::to_string(attempts + 1) + " of " + std::to_string(retry_.max_attempts) + ")");
    wait(delay);
  }
}

}  // namespace harvest
