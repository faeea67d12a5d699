// fuzz/fuzz_http_request.cpp — libFuzzer harness for the REST server's request handling: the
// HTTP/1.1 parser with the server's own limits (server::parse_request) and, for a request that
// parses, the JSON validation of both predict routes (read_single_request / read_batch_request).
// Any input must give a parsed request or a 4xx answer: no crash, leak, hang or huge allocation.
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DINSPIRE_FUZZ=ON -DINSPIRE_TESTS=OFF \
//       -DINSPIRE_BENCH=OFF -DINSPIRE_DEFAULT_MODEL=NONE
//   cmake --build build-fuzz --target fuzz_http_request
//   ./build-fuzz/fuzz_http_request fuzz/corpus/http -max_total_time=600 -rss_limit_mb=2048 -timeout=10
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "server/http_api.h"
#include "server/http_server.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  server::HttpServerOptions o;
  o.max_body_bytes = 64 << 10;
  o.max_header_bytes = 8 << 10;
  server::HttpRequest req;
  std::string error;
  int status = server::parse_request(reinterpret_cast<const char*>(data), size, o, req, error);
  if (status != 0) {
    if (status < 400 || status > 499 || error.empty()) std::abort();
    return 0;
  }
  server::HttpResponse err;
  std::string title, abstract;
  if (!server::read_single_request(req.body, title, abstract, err) &&
      (err.status < 400 || err.status > 499))
    std::abort();
  std::vector<std::pair<std::string, std::string>> papers;
  if (!server::read_batch_request(req.body, 100, papers, err) &&
      (err.status < 400 || err.status > 499))
    std::abort();
  if (papers.size() > 100) std::abort();
  return 0;
}
