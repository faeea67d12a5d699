// io/atomic_file.h — write a file atomically: to an unpredictable temporary next to the target
// (created with O_EXCL, never following a symlink), then rename(2) over it.
//
// - A crash or error mid-write never leaves a truncated file where a good one used to be.
// - Every write, the fsync and the close are checked; a full disk is an error naming the path.
// - The target must be a regular file or absent: a symlink, FIFO, device, socket or directory
//   there is refused (std::runtime_error), never replaced or written through.
// - A file replaced keeps its permission bits; a new one gets 0666 & ~umask, like open(2).
// - Temporaries in flight are removed on SIGINT / SIGTERM once install_signal_cleanup() ran.
#pragma once

#include <cstddef>
#include <functional>
#include <ostream>
#include <string>

namespace io {

// Calls write(out) on a temporary file next to `path`, flushes and fsyncs it, then renames it
// to `path`. On any failure the temporary is removed and std::runtime_error names the path.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

// Same, for a buffer already in memory.
void write_file_atomically(const std::string& path, const void* data, size_t size);

// Throws std::runtime_error unless `path` is absent or a regular file (a symlink is refused even
// when it points to one). The check write_file_atomically makes before it writes anything;
// commands call it early, before long work, so that a bad -o fails at once.
void check_output_path(const std::string& path);

// Installs SIGINT / SIGTERM handlers that delete the temporaries being written, then die of the
// same signal (so the exit status still says "killed by SIGINT"). Idempotent.
void install_signal_cleanup();

// How many temporaries are being written right now (tests).
std::size_t temporaries_in_flight();

}  // namespace io
