// tests/http_test_client.h — a tiny blocking HTTP/1.1 client over loopback, for tests only.
// Every socket has a 20 s receive/send timeout so that a broken server fails the test instead
// of hanging it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

namespace testhttp {

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class Conn {
 public:
  explicit Conn(std::uint16_t port, int timeout_s = 20) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket() failed");
    timeval tv{timeout_s, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
      throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
    }
  }
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  void send_raw(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      off += static_cast<std::size_t>(n);
    }
  }
  void send_request(const std::string& method, const std::string& path, const std::string& body,
                    bool close = false) {
    std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (!body.empty() || method == "POST")
      r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n";
    if (close) r += "Connection: close\r\n";
    r += "\r\n" + body;
    send_raw(r);
  }
  // Reads one response (Content-Length framing, as the server always sends).
  Response read_response() {
    std::size_t hdr_end;
    while ((hdr_end = buf_.find("\r\n\r\n")) == std::string::npos) fill();
    Response res;
    std::string head = buf_.substr(0, hdr_end);
    buf_.erase(0, hdr_end + 4);
    auto line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12 || status_line.compare(0, 5, "HTTP/") != 0)
      throw std::runtime_error("bad status line: " + status_line);
    res.status = std::stoi(status_line.substr(9, 3));
    std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      auto e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string line = head.substr(pos, e - pos);
      auto c = line.find(':');
      if (c != std::string::npos) {
        std::string k = line.substr(0, c), v = line.substr(c + 1);
        std::transform(k.begin(), k.end(), k.begin(), [](unsigned char ch) { return std::tolower(ch); });
        v.erase(0, v.find_first_not_of(' '));
        res.headers[k] = v;
      }
      pos = e + 2;
    }
    std::size_t len = res.headers.count("content-length") ? std::stoul(res.headers["content-length"]) : 0;
    while (buf_.size() < len) fill();
    res.body = buf_.substr(0, len);
    buf_.erase(0, len);
    return res;
  }
  int fd() const { return fd_; }
  // True when the server has closed the connection (reads EOF within the timeout).
  bool closed_by_peer() {
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0;
  }

 private:
  void fill() {
    char tmp[8192];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) throw std::runtime_error("connection closed or timed out while reading");
    buf_.append(tmp, static_cast<std::size_t>(n));
  }
  int fd_ = -1;
  std::string buf_;
};

inline Response request(std::uint16_t port, const std::string& method, const std::string& path,
                        const std::string& body = "") {
  Conn c(port);
  c.send_request(method, path, body, true);
  return c.read_response();
}

}  // namespace testhttp
