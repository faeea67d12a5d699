// ctest-labels: unit
// HTTP behaviour of the REST API (server/http_server + server/http_api) over a real loopback socket on
// an ephemeral port. The model is injected as a function here (its own tests live in
// test_classifier_api.cpp; the served binary is exercised in test_cli_predict.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/http_api.h"
#include "server/http_server.h"
#include "tests/http_test_client.h"

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// A deterministic stand-in for the model: the scores encode the title and abstract lengths, so
// the tests can check which input produced which answer (and in which order).
std::string fake_predict(const std::string& title, const std::string& abstract) {
  if (title == "THROW") throw std::runtime_error("model exploded");
  if (title == "INVALID") throw std::invalid_argument("text is not acceptable");
  nlohmann::ordered_json j;
  j["prediction"] = title.size() > abstract.size() ? "core" : "rejected";
  j["scores"]["rejected"] = static_cast<double>(title.size());
  j["scores"]["non_core"] = static_cast<double>(abstract.size());
  j["scores"]["core"] = 0.5;
  return j.dump();
}

struct Fixture {
  server::HttpServer server;
  std::atomic<int> calls{0};
  std::chrono::milliseconds delay{0};

  explicit Fixture(server::HttpServerOptions o = {}, std::chrono::milliseconds d = 0ms)
      : server(with_port0(o)), delay(d) {
    server::CorenessApi api;
    api.predict = [this](const std::string& t, const std::string& a) {
      ++calls;
      if (delay.count()) std::this_thread::sleep_for(delay);
      return fake_predict(t, a);
    };
    api.health_extra = {{"model", "fake"}};
    server::add_coreness_routes(server, api);
    server.start();
  }
  static server::HttpServerOptions with_port0(server::HttpServerOptions o) {
    o.host = "127.0.0.1";
    o.port = 0;
    return o;
  }
  std::uint16_t port() const { return server.port(); }
};

json paper(const std::string& t, const std::string& a) { return {{"title", t}, {"abstract", a}}; }

// A server whose model answers several papers per call (CorenessApi::predict_many, batch > 1);
// it records the size of every call.
struct BatchFixture {
  server::HttpServer server;
  std::mutex mu;
  std::vector<std::size_t> sizes;
  std::chrono::milliseconds delay;
  std::atomic<bool> wrong_count{false};
  // With hold_first set, the model's first call waits for release() (30 s at most), so a test
  // can queue requests behind it deterministically, whatever the load of the machine.
  std::atomic<bool> hold_first{false};
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool released = false;

  void release() {
    {
      std::lock_guard<std::mutex> lk(gate_mu);
      released = true;
    }
    gate_cv.notify_all();
  }
  // Waits (10 s at most) until cond() holds; false if it never did.
  template <typename F>
  static bool eventually(F cond) {
    auto t0 = std::chrono::steady_clock::now();
    while (!cond()) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(10)) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  BatchFixture(int workers, std::size_t batch, std::chrono::milliseconds d)
      : server(options(workers)), delay(d) {
    server::CorenessApi api;
    api.predict = [](const std::string&, const std::string&) -> std::string {
      throw std::logic_error("predict must not be called when batch > 1");
    };
    api.predict_many = [this](const std::vector<server::PaperText>& papers) {
      bool first;
      {
        std::lock_guard<std::mutex> lk(mu);
        first = sizes.empty();
        sizes.push_back(papers.size());
      }
      if (first && hold_first) {
        std::unique_lock<std::mutex> lk(gate_mu);
        gate_cv.wait_for(lk, std::chrono::seconds(30), [this] { return released; });
      }
      if (delay.count()) std::this_thread::sleep_for(delay);
      std::vector<server::PaperResult> out(papers.size());
      for (std::size_t i = 0; i < papers.size(); ++i) {
        try {
          out[i].json = fake_predict(papers[i].title, papers[i].abstract);
        } catch (...) {
          out[i].error = std::current_exception();
        }
      }
      if (wrong_count) out.pop_back();
      return out;
    };
    api.batch = batch;
    server::add_coreness_routes(server, api);
    server.start();
  }
  static server::HttpServerOptions options(int workers) {
    server::HttpServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.worker_threads = workers;
    return o;
  }
  std::uint16_t port() const { return server.port(); }
  std::vector<std::size_t> calls() {
    std::lock_guard<std::mutex> lk(mu);
    return sizes;
  }
};

}  // namespace

TEST(Server, PredictReturnsThePredictorsAnswer) {
  Fixture f;
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness",
                             paper("A long title", "short").dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "application/json");
  auto j = json::parse(r.body);
  EXPECT_EQ(j["prediction"], "core");
  EXPECT_EQ(j["scores"]["rejected"], 12.0);
  EXPECT_EQ(j["scores"]["non_core"], 5.0);
  EXPECT_EQ(f.calls.load(), 1);
}

TEST(Server, UnicodeTextIsPassedThroughUnchanged) {
  Fixture f;
  // "Ωμέγα" is 10 UTF-8 bytes; escaped and raw forms must reach the model identically.
  auto r1 = testhttp::request(f.port(), "POST", "/api/predict/coreness",
                              R"({"title": "Ωμέγα", "abstract": ""})");
  auto r2 = testhttp::request(f.port(), "POST", "/api/predict/coreness",
                              R"({"title": "\u03a9\u03bc\u03ad\u03b3\u03b1", "abstract": ""})");
  ASSERT_EQ(r1.status, 200) << r1.body;
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(json::parse(r1.body)["scores"]["rejected"], 10.0);
  EXPECT_EQ(r1.body, r2.body);
}

TEST(Server, BatchKeepsOrder) {
  Fixture f({}, 0ms);
  json batch = json::array();
  for (int i = 0; i < 40; ++i) batch.push_back(paper(std::string(i, 'x'), "abc"));
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness/batch", batch.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(j[i]["scores"]["rejected"], double(i)) << "item " << i;
    EXPECT_EQ(j[i]["prediction"], i > 3 ? "core" : "rejected");
  }
  EXPECT_EQ(f.calls.load(), 40);
  auto empty = testhttp::request(f.port(), "POST", "/api/predict/coreness/batch", "[]");
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(json::parse(empty.body), json::array());
}

TEST(Server, BatchRunsItemsInParallel) {
  server::HttpServerOptions o;
  o.worker_threads = 4;
  Fixture f(o, 150ms);
  json batch = json::array();
  for (int i = 0; i < 8; ++i) batch.push_back(paper("t", "a"));
  auto t0 = std::chrono::steady_clock::now();
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness/batch", batch.dump());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body).size(), 8u);
  // 8 items × 150 ms on 4 workers ≈ 0.3 s; serial would be 1.2 s.
  EXPECT_LT(s, 1.0);
}

TEST(Server, Health) {
  Fixture f;
  auto r = testhttp::request(f.port(), "GET", "/api/health");
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["model"], "fake");
  EXPECT_TRUE(j["date"].is_string());
  EXPECT_EQ(j["queue"], 0);
}

TEST(Server, MalformedJsonIs400) {
  Fixture f;
  for (std::string body : {std::string("{\"title\": \"x\", "), std::string("not json"),
                           std::string("")}) {
    auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness", body);
    EXPECT_EQ(r.status, 400) << body << " → " << r.body;
    auto j = json::parse(r.body);  // the error itself is JSON
    EXPECT_EQ(j["status"], 400);
    EXPECT_NE(j["error"].get<std::string>().find("malformed JSON"), std::string::npos);
  }
  auto b = testhttp::request(f.port(), "POST", "/api/predict/coreness/batch", "[{]");
  EXPECT_EQ(b.status, 400);
  EXPECT_EQ(f.calls.load(), 0);
}

TEST(Server, InvalidUtf8Is400) {
  Fixture f;
  std::string body = "{\"title\": \"caf\xC3\", \"abstract\": \"x\"}";   // truncated sequence
  std::string body2 = "{\"title\": \"ok\", \"abstract\": \"\xFF\xFE\"}";  // never valid
  for (auto& b : {body, body2}) {
    auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness", b);
    EXPECT_EQ(r.status, 400) << r.body;
    auto j = json::parse(r.body);  // still valid JSON (bad bytes replaced)
    EXPECT_NE(j["error"].get<std::string>().find("UTF-8"), std::string::npos) << r.body;
  }
  EXPECT_EQ(f.calls.load(), 0);
}

TEST(Server, MissingOrWronglyTypedFieldIs422NamingIt) {
  Fixture f;
  struct Case {
    std::string path, body, field;
  };
  std::vector<Case> cases = {
      {"/api/predict/coreness", R"({"title": "x"})", "abstract"},
      {"/api/predict/coreness", R"({"abstract": "x"})", "title"},
      {"/api/predict/coreness", R"({"title": 5, "abstract": "x"})", "title"},
      {"/api/predict/coreness", R"({"title": "t", "abstract": null})", "abstract"},
      {"/api/predict/coreness", R"(["t", "a"])", "body"},
      {"/api/predict/coreness/batch", R"({"title": "t", "abstract": "a"})", "body"},
      {"/api/predict/coreness/batch", R"([{"title": "t", "abstract": "a"}, {"abstract": "a"}])",
       "[1].title"},
      {"/api/predict/coreness/batch", R"([{"title": "t", "abstract": "a"}, 7])", "[1]"},
  };
  for (auto& c : cases) {
    auto r = testhttp::request(f.port(), "POST", c.path, c.body);
    EXPECT_EQ(r.status, 422) << c.body << " → " << r.body;
    auto j = json::parse(r.body);
    EXPECT_EQ(j["field"], c.field) << c.body;
    EXPECT_NE(j["error"].get<std::string>().find(c.field == "body" ? "body" : c.field),
              std::string::npos)
        << r.body;
  }
  EXPECT_EQ(f.calls.load(), 0);  // nothing reached the model
}

TEST(Server, ModelErrorsBecome422Or500) {
  Fixture f;
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness", paper("THROW", "").dump());
  EXPECT_EQ(r.status, 500);
  // The model's message goes to the server's log, not to the client (issue 20, item 13).
  EXPECT_EQ(r.body.find("model exploded"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("internal error"), std::string::npos) << r.body;
  auto r2 = testhttp::request(f.port(), "POST", "/api/predict/coreness", paper("INVALID", "").dump());
  EXPECT_EQ(r2.status, 422);
  // The server is still fine afterwards.
  EXPECT_EQ(testhttp::request(f.port(), "GET", "/api/health").status, 200);
}

TEST(Server, BodyOverTheLimitIs413) {
  server::HttpServerOptions o;
  o.max_body_bytes = 1024;
  Fixture f(o);
  std::string big = paper(std::string(4000, 'x'), "a").dump();
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness", big);
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_NE(json::parse(r.body)["error"].get<std::string>().find("1024"), std::string::npos);
  // A body just under the limit is fine.
  auto ok = testhttp::request(f.port(), "POST", "/api/predict/coreness",
                              paper(std::string(900, 'x'), "a").dump());
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(f.calls.load(), 1);
}

TEST(Server, UnknownRouteIs404AndWrongMethodIs405) {
  Fixture f;
  auto r = testhttp::request(f.port(), "GET", "/api/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["status"], 404);
  auto m = testhttp::request(f.port(), "GET", "/api/predict/coreness");
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.headers["allow"], "POST");
  auto h = testhttp::request(f.port(), "POST", "/api/health", "{}");
  EXPECT_EQ(h.status, 405);
  EXPECT_EQ(h.headers["allow"], "GET, HEAD");
}

TEST(Server, MalformedHttpIs400) {
  Fixture f;
  testhttp::Conn c(f.port());
  c.send_raw("THIS IS NOT HTTP\r\n\r\n");
  auto r = c.read_response();
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(Server, KeepAliveServesSeveralRequestsOnOneConnection) {
  Fixture f;
  testhttp::Conn c(f.port());
  for (int i = 0; i < 5; ++i) {
    c.send_request("POST", "/api/predict/coreness", paper(std::string(i, 'y'), "").dump());
    auto r = c.read_response();
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(json::parse(r.body)["scores"]["rejected"], double(i));
  }
  c.send_request("GET", "/api/health", "");
  EXPECT_EQ(c.read_response().status, 200);
  // An error answer does not break the connection either.
  c.send_request("POST", "/api/predict/coreness", "{}");
  EXPECT_EQ(c.read_response().status, 422);
  c.send_request("POST", "/api/predict/coreness", paper("a", "b").dump());
  EXPECT_EQ(c.read_response().status, 200);
}

TEST(Server, ManyParallelClientsAndHealthWhileBusy) {
  server::HttpServerOptions o;
  o.worker_threads = 4;
  Fixture f(o, 100ms);
  constexpr int kClients = 32;
  std::vector<std::future<std::pair<int, std::string>>> futs;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kClients; ++i)
    futs.push_back(std::async(std::launch::async, [&, i] {
      auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness",
                                 paper(std::string(i, 'z'), "").dump());
      return std::make_pair(r.status, r.body);
    }));
  // While 32 × 100 ms of work is queued on 4 workers (≈0.8 s), health must answer at once.
  std::this_thread::sleep_for(50ms);
  std::vector<double> health_ms;
  for (int k = 0; k < 5; ++k) {
    auto h0 = std::chrono::steady_clock::now();
    auto h = testhttp::request(f.port(), "GET", "/api/health");
    health_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - h0).count());
    ASSERT_EQ(h.status, 200);
    if (k == 0) {
      EXPECT_GT(json::parse(h.body)["queue"].get<int>(), 0) << "the server should be busy";
    }
  }
  for (int i = 0; i < kClients; ++i) {
    auto [status, body] = futs[i].get();
    ASSERT_EQ(status, 200) << body;
    EXPECT_EQ(json::parse(body)["scores"]["rejected"], double(i));
  }
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(f.calls.load(), kClients);
  EXPECT_LT(total, 2.5);  // parallel: ≈0.8 s; serial would be 3.2 s
  for (double ms : health_ms) EXPECT_LT(ms, 80.0) << "health waited for the model";
}

TEST(Server, FullQueueAnswers503) {
  server::HttpServerOptions o;
  o.worker_threads = 1;
  o.max_queue = 1;
  Fixture f(o, 300ms);
  std::vector<std::future<int>> futs;
  for (int i = 0; i < 4; ++i)
    futs.push_back(std::async(std::launch::async, [&] {
      return testhttp::request(f.port(), "POST", "/api/predict/coreness", paper("t", "a").dump())
          .status;
    }));
  int ok = 0, busy = 0;
  for (auto& fu : futs) {
    int s = fu.get();
    ok += s == 200;
    busy += s == 503;
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 4);
}

TEST(Server, GracefulStopFinishesRequestsInFlight) {
  server::HttpServerOptions o;
  o.worker_threads = 2;
  auto f = std::make_unique<Fixture>(o, 300ms);
  auto port = f->port();
  auto fut = std::async(std::launch::async, [port] {
    return testhttp::request(port, "POST", "/api/predict/coreness", paper("abc", "").dump());
  });
  testhttp::Conn idle(port);  // an idle keep-alive connection must not hold the stop up
  std::this_thread::sleep_for(100ms);
  auto t0 = std::chrono::steady_clock::now();
  f->server.stop();
  f->server.wait();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto r = fut.get();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_LT(s, 5.0);
  EXPECT_TRUE(idle.closed_by_peer());
  EXPECT_THROW(testhttp::Conn again(port), std::runtime_error);  // no longer listening
}

TEST(Server, ListenErrorsNameTheAddress) {
  Fixture f;
  server::HttpServerOptions o;
  o.port = f.port();  // already taken
  server::HttpServer s2(o);
  try {
    s2.start();
    FAIL() << "expected a bind error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(f.port())),
              std::string::npos)
        << e.what();
  }
  server::HttpServerOptions bad;
  bad.host = "not-an-ip";
  server::HttpServer s3(bad);
  EXPECT_THROW(s3.start(), std::runtime_error);
}

// --- batch > 1: papers waiting for a worker run together (server::Batcher) ---

TEST(ServerBatching, ConcurrentRequestsWaitingForTheWorkerRunTogether) {
  BatchFixture f(/*workers=*/1, /*batch=*/4, 0ms);
  f.hold_first = true;
  // The first request takes the only worker and is held there; the next 6 arrive meanwhile
  // and wait (7 worker jobs pending); then the worker is released.
  auto first = std::async(std::launch::async, [&] {
    return testhttp::request(f.port(), "POST", "/api/predict/coreness", paper("", "abc").dump());
  });
  ASSERT_TRUE(f.eventually([&] { return f.calls().size() == 1; }));
  std::vector<std::future<testhttp::Response>> rest;
  for (int i = 1; i <= 6; ++i)
    rest.push_back(std::async(std::launch::async, [&, i] {
      return testhttp::request(f.port(), "POST", "/api/predict/coreness",
                               paper(std::string(i, 'x'), "abc").dump());
    }));
  ASSERT_TRUE(f.eventually([&] { return f.server.pending_work() == 7; }))
      << "pending " << f.server.pending_work();
  f.release();
  auto r0 = first.get();
  ASSERT_EQ(r0.status, 200) << r0.body;
  EXPECT_EQ(json::parse(r0.body)["scores"]["rejected"], 0.0);
  for (int i = 1; i <= 6; ++i) {
    auto r = rest[i - 1].get();
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["scores"]["rejected"], double(i)) << "request " << i;
  }
  // The lone first paper, then the 6 that waited, 4 at a time (batch 1 would give 7 calls).
  EXPECT_EQ(f.calls(), (std::vector<std::size_t>{1, 4, 2}));
}

TEST(ServerBatching, LoneRequestDoesNotWaitForABatch) {
  BatchFixture f(2, 32, 0ms);
  auto t0 = std::chrono::steady_clock::now();
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness", paper("ab", "c").dump());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_LT(s, 1.0);
  EXPECT_EQ(f.calls(), std::vector<std::size_t>{1});
}

TEST(ServerBatching, BatchRequestKeepsOrderInGroupsOfAtMostBatch) {
  BatchFixture f(2, 8, 20ms);
  json batch = json::array();
  for (int i = 0; i < 43; ++i) batch.push_back(paper(std::string(i, 'x'), "abc"));
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness/batch", batch.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  ASSERT_EQ(j.size(), 43u);
  for (int i = 0; i < 43; ++i) EXPECT_EQ(j[i]["scores"]["rejected"], double(i)) << "item " << i;
  auto calls = f.calls();
  std::size_t total = 0;
  for (auto n : calls) {
    total += n;
    EXPECT_LE(n, 8u);
  }
  EXPECT_EQ(total, 43u);
  EXPECT_GE(calls.size(), 6u);  // ceil(43 / 8)
}

TEST(ServerBatching, OneBadPaperFailsOnlyItsOwnRequest) {
  BatchFixture f(1, 8, 0ms);
  f.hold_first = true;
  auto busy = std::async(std::launch::async, [&] {
    return testhttp::request(f.port(), "POST", "/api/predict/coreness", paper("a", "b").dump());
  });
  ASSERT_TRUE(f.eventually([&] { return f.calls().size() == 1; }));
  // These two wait together and run in one call: only the INVALID one gets its 422.
  auto bad = std::async(std::launch::async, [&] {
    return testhttp::request(f.port(), "POST", "/api/predict/coreness",
                             paper("INVALID", "b").dump());
  });
  auto good = std::async(std::launch::async, [&] {
    return testhttp::request(f.port(), "POST", "/api/predict/coreness", paper("abc", "").dump());
  });
  ASSERT_TRUE(f.eventually([&] { return f.server.pending_work() == 3; }));
  f.release();
  EXPECT_EQ(busy.get().status, 200);
  auto rb = bad.get(), rg = good.get();
  EXPECT_EQ(rb.status, 422) << rb.body;
  EXPECT_EQ(json::parse(rb.body)["field"], "body");
  ASSERT_EQ(rg.status, 200) << rg.body;
  EXPECT_EQ(json::parse(rg.body)["scores"]["rejected"], 3.0);
  EXPECT_EQ(f.calls(), (std::vector<std::size_t>{1, 2}));
}

TEST(ServerBatching, BatchRequestReportsItsLowestFailingItem) {
  BatchFixture f(2, 4, 0ms);
  json batch = json::array();
  for (int i = 0; i < 12; ++i)
    batch.push_back(paper(i == 9 || i == 5 ? "INVALID" : (i == 10 ? "THROW" : "t"), "a"));
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness/batch", batch.dump());
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(json::parse(r.body)["field"], "[5]");
}

TEST(ServerBatching, AModelReturningTheWrongCountIs500NotGarbage) {
  BatchFixture f(1, 4, 0ms);
  f.wrong_count = true;
  auto r = testhttp::request(f.port(), "POST", "/api/predict/coreness", paper("a", "b").dump());
  EXPECT_EQ(r.status, 500) << r.body;
  json batch = json::array({paper("a", "b"), paper("c", "d")});
  auto rb = testhttp::request(f.port(), "POST", "/api/predict/coreness/batch", batch.dump());
  EXPECT_EQ(rb.status, 500) << rb.body;
}
