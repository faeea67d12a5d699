// io/atomic_file.cpp — see atomic_file.h.
#include "io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <streambuf>

namespace io {

namespace {

// ---- the registry of temporaries in flight, readable from a signal handler ----
constexpr int kSlots = 64;
struct Slot {
  std::atomic<bool> used{false};
  char path[PATH_MAX];
};
Slot g_slots[kSlots];
std::atomic<bool> g_handlers{false};

int register_temp(const std::string& p) {
  if (p.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!g_slots[i].used.load() && g_slots[i].used.compare_exchange_strong(expected, true)) {
      // Mark the slot taken with an empty path first, so that a signal in between sees nothing.
      g_slots[i].path[0] = '\0';
      std::memcpy(g_slots[i].path + 1, p.c_str() + 1, p.size());  // all but the first byte
      std::atomic_signal_fence(std::memory_order_seq_cst);
      g_slots[i].path[0] = p[0];
      return i;
    }
  }
  return -1;  // more than kSlots at once: still written, just not cleaned up on a signal
}

void unregister_temp(int slot) {
  if (slot < 0) return;
  g_slots[slot].path[0] = '\0';
  std::atomic_signal_fence(std::memory_order_seq_cst);
  g_slots[slot].used.store(false);
}

extern "C" void cleanup_and_die(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (g_slots[i].used.load() && g_slots[i].path[0] != '\0') ::unlink(g_slots[i].path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// ---- an ostream buffer on a file descriptor that checks every write ----
class FdBuf : public std::streambuf {
 public:
  explicit FdBuf(int fd) : fd_(fd) { setp(buf_, buf_ + sizeof buf_); }
  int error() const { return err_; }

 protected:
  int_type overflow(int_type ch) override {
    if (!flush_buffer()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  int sync() override { return flush_buffer() ? 0 : -1; }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    if (n >= static_cast<std::streamsize>(sizeof buf_)) {
      if (!flush_buffer() || !write_all(s, static_cast<std::size_t>(n))) return 0;
      return n;
    }
    return std::streambuf::xsputn(s, n);
  }

 private:
  bool flush_buffer() {
    std::size_t n = static_cast<std::size_t>(pptr() - pbase());
    bool ok = write_all(pbase(), n);
    setp(buf_, buf_ + sizeof buf_);
    return ok;
  }
  bool write_all(const char* p, std::size_t n) {
    if (err_) return false;
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
        return false;
      }
      if (w == 0) {
        err_ = EIO;
        return false;
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }
  int fd_;
  int err_ = 0;
  char buf_[1 << 16];
};

std::string random_suffix() {
  static thread_local std::mt19937_64 gen(std::random_device{}() ^
                                          (static_cast<std::uint64_t>(::getpid()) << 32));
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string s(12, 'x');
  for (auto& c : s) c = kChars[gen() % (sizeof kChars - 1)];
  return s;
}

const char* kind_of(mode_t m) {
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

mode_t current_umask() {
  // umask(2) can only be read by setting it; the value is restored at once. (Racy only against
  // another thread changing the umask at the same moment, which this program never does.)
  mode_t m = ::umask(022);
  ::umask(m);
  return m;
}

}  // namespace

void check_output_path(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw std::runtime_error(path + ": cannot check the output path: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode))
    throw std::runtime_error(path + ": refusing to replace it: it is " + kind_of(st.st_mode) +
                             ", not a regular file (write to a regular file, or '-' for "
                             "standard output where the command allows it)");
}

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  if (path.empty()) throw std::runtime_error("no output path given");
  check_output_path(path);
  struct stat old {};
  const bool replacing = ::lstat(path.c_str(), &old) == 0;
  const mode_t mode = replacing ? (old.st_mode & 07777) : (0666 & ~current_umask());

  // O_CREAT | O_EXCL never follows a symlink and never opens what exists: a name planted in
  // advance just makes us pick another one.
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = path + ".tmp." + random_suffix();
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno != EEXIST)
      throw std::runtime_error(path + ": cannot create a temporary file next to it: " +
                               std::strerror(errno));
  }
  if (fd < 0) throw std::runtime_error(path + ": cannot create a unique temporary file");
  int slot = register_temp(tmp);
  bool cleaned = false;
  auto cleanup = [&] {
    if (cleaned) return;
    cleaned = true;
    if (fd >= 0) ::close(fd);
    fd = -1;
    ::unlink(tmp.c_str());
    unregister_temp(slot);
  };
  auto fail = [&](const std::string& what, int err) {
    cleanup();
    throw std::runtime_error(path + ": " + what +
                             (err ? std::string(": ") + std::strerror(err) : std::string()));
  };
  try {
    {
      FdBuf buf(fd);
      std::ostream out(&buf);
      write(out);
      out.flush();
      if (buf.error()) fail("write failed", buf.error());
      if (!out) fail("write failed", 0);
    }
    if (::fchmod(fd, mode) != 0) fail("cannot set the file mode", errno);
    if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) fail("fsync failed", errno);
    int cfd = fd;
    fd = -1;
    if (::close(cfd) != 0) fail("close failed", errno);
    // The target may have been swapped for something else while we wrote: check again.
    check_output_path(path);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail("cannot rename the temporary into place", errno);
  } catch (...) {
    cleanup();
    throw;
  }
  unregister_temp(slot);
}

void write_file_atomically(const std::string& path, const void* data, size_t size) {
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  });
}

void install_signal_cleanup() {
  if (g_handlers.exchange(true)) return;
  struct sigaction sa {};
  sa.sa_handler = cleanup_and_die;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
}

std::size_t temporaries_in_flight() {
  std::size_t n = 0;
  for (auto& s : g_slots) n += s.used.load() && s.path[0] != '\0';
  return n;
}

}  // namespace io
