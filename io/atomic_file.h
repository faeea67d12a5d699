// io/atomic_file.h — write a file atomically: to "<path>.tmp.<pid>" then rename(2) over <path>.
// A crash or error mid-write never leaves a truncated file where a good one used to be.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace io {

// Calls write(out) on a temporary file next to `path`, flushes and fsyncs it, then renames it
// to `path`. On any failure the temporary is removed and std::runtime_error names the path.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

// Same, for a buffer already in memory.
void write_file_atomically(const std::string& path, const void* data, size_t size);

}  // namespace io
