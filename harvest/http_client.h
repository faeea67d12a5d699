// harvest/http_client.h — a small blocking HTTP/1.1 client (Boost.Beast inside, hidden here) with
// TLS (OpenSSL), timeouts, retries with exponential backoff, HTTP 429 / Retry-After and a
// client-side rate limit. One connection per request (the servers we talk to are slow next to
// a TCP + TLS handshake).
//
// Credentials never appear in messages: errors name the URL (which may not carry user:password,
// see parse_url) and the HTTP status.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace harvest {

// An error that ends the harvest (after retries): message names the URL and what went wrong.
class HarvestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A transport failure of one attempt (connect, TLS, timeout, connection closed or truncated).
class NetworkError : public HarvestError {
 public:
  using HarvestError::HarvestError;
};

// A final non-2xx answer. status() is the HTTP status.
class HttpStatusError : public HarvestError {
 public:
  HttpStatusError(int status, const std::string& msg) : HarvestError(msg), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;
  std::string port;    // always set ("80"/"443" by default)
  std::string target;  // path + query, at least "/"
  bool https() const { return scheme == "https"; }
  std::string origin() const;  // scheme://host[:port]
  std::string str() const;     // origin() + target
};

// Parses http(s)://host[:port][/path][?query]. Throws std::invalid_argument with a clear
// message for another scheme, a missing host, a bad port, or credentials in the URL (the
// message then does not repeat the URL).
Url parse_url(const std::string& s);

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string url_encode(std::string_view s);
std::string base64_encode(std::string_view s);

struct HttpResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  // The value of a header ("" when absent); `name` in lower case.
  std::string header(std::string_view name) const;
};

struct ClientOptions {
  std::string ca_cert;           // PEM file of extra trusted CAs for https ("" = system CAs)
  double timeout_s = 120;        // per step (connect, TLS handshake, send, receive the answer)
  std::string user_agent = "inspire-classifier";
  std::string basic_auth;        // "user:password" or "" (sent as Authorization: Basic)
  std::size_t max_body_bytes = std::size_t(2) << 30;
};

// One request, one attempt. Throws NetworkError on any transport problem (including a body
// cut short before Content-Length / the final chunk).
HttpResponse http_request(const ClientOptions& opt, const std::string& method, const Url& url,
                          const std::string& body = "", const std::string& content_type = "");

struct RetryPolicy {
  int max_attempts = 6;        // network errors and 5xx: attempts in all
  double base_delay_s = 2;     // backoff: base * 2^(attempt-1), capped at max_delay_s
  double max_delay_s = 120;
  int max_429 = 30;            // HTTP 429 answers tolerated for one request
  double default_retry_after_s = 5;  // 429 without a usable Retry-After
  double time_scale = 1;       // multiplies every wait (tests use a small value)
};

struct RateLimit {
  int max_requests = 0;  // at most this many requests per window; 0 = no limit
  double window_s = 5;
};

// Retries, backoff, 429 handling and rate limiting on top of http_request.
class Fetcher {
 public:
  using LogFn = std::function<void(const std::string&)>;
  Fetcher(ClientOptions client, RetryPolicy retry, RateLimit rate, LogFn warn = nullptr);

  // Returns a 2xx answer, or throws: HttpStatusError for a final non-2xx answer (4xx other
  // than 429 at once; 5xx and 429 once the retries are spent), NetworkError when every
  // attempt failed in transport. Messages: "<METHOD> <url>: HTTP <status> ... : <body start>".
  HttpResponse fetch(const std::string& method, const std::string& url,
                     const std::string& body = "", const std::string& content_type = "");

  std::size_t requests() const { return requests_; }
  // Sleeps `seconds` × time_scale (also used by callers that must wait).
  void wait(double seconds) const;

 private:
  void throttle();
  ClientOptions client_;
  RetryPolicy retry_;
  RateLimit rate_;
  LogFn warn_;
  std::deque<std::chrono::steady_clock::time_point> recent_;
  std::size_t requests_ = 0;
};

// Retry-After: delay-seconds or an HTTP-date; returns seconds (>= 0) or a negative number
// when the value cannot be used.
double parse_retry_after(const std::string& value);

}  // namespace harvest
