// io/zip.cpp — see zip.h.
#include "io/zip.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "io/errors.h"

namespace io {

namespace {
constexpr std::uint32_t kEocdSig = 0x06054b50;
constexpr std::uint32_t kZip64EocdSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kLocalSig = 0x04034b50;

std::uint64_t rd(const std::uint8_t* p, int k) {
  std::uint64_t v = 0;
  for (int j = 0; j < k; ++j) v |= std::uint64_t(p[j]) << (8 * j);
  return v;
}
}  // namespace

ZipReader::ZipReader(const std::string& path) : ZipReader(MmapFile::open_shared(path)) {}

ZipReader::ZipReader(std::shared_ptr<const MmapFile> file)
    : file_(std::move(file)), p_(file_->data()), n_(file_->size()), name_(file_->path()) {
  parse();
}

ZipReader::ZipReader(std::span<const std::uint8_t> bytes, std::string name)
    : p_(bytes.data()), n_(bytes.size()), name_(std::move(name)) {
  parse();
}

void ZipReader::fail(const std::string& what, std::uint64_t offset) const {
  throw FormatError(name_, "zip: " + what, "byte offset " + std::to_string(offset));
}

void ZipReader::parse() {
  if (n_ < 22) fail("file too small to be a zip archive (" + std::to_string(n_) + " bytes)", 0);
  // End of central directory: the last 22-byte record with the signature, within 64 KiB + 22.
  std::uint64_t lo = n_ > 22 + 65535 ? n_ - 22 - 65535 : 0;
  std::uint64_t eocd = UINT64_MAX;
  for (std::uint64_t q = n_ - 22 + 1; q-- > lo;) {
    if (rd(p_ + q, 4) == kEocdSig && q + 22 + rd(p_ + q + 20, 2) <= n_) { eocd = q; break; }
  }
  if (eocd == UINT64_MAX)
    fail("no end-of-central-directory record (not a zip archive, or truncated)", n_);
  std::uint64_t disk = rd(p_ + eocd + 4, 2), cd_disk = rd(p_ + eocd + 6, 2);
  std::uint64_t count = rd(p_ + eocd + 10, 2);
  std::uint64_t cd_size = rd(p_ + eocd + 12, 4);
  std::uint64_t cd_off = rd(p_ + eocd + 16, 4);
  bool need64 = count == 0xffff || cd_size == 0xffffffff || cd_off == 0xffffffff;
  if (eocd >= 20 && rd(p_ + eocd - 20, 4) == kZip64LocatorSig) {
    std::uint64_t loc = eocd - 20;
    std::uint64_t z64 = rd(p_ + loc + 8, 8);
    if (z64 > n_ || n_ - z64 < 56 || z64 > loc) fail("ZIP64 locator points outside the file", loc);
    if (rd(p_ + z64, 4) != kZip64EocdSig) fail("bad ZIP64 end-of-central-directory signature", z64);
    disk = rd(p_ + z64 + 16, 4);
    cd_disk = rd(p_ + z64 + 20, 4);
    count = rd(p_ + z64 + 32, 8);
    cd_size = rd(p_ + z64 + 40, 8);
    cd_off = rd(p_ + z64 + 48, 8);
  } else if (need64) {
    fail("archive needs ZIP64 but has no ZIP64 locator", eocd);
  }
  if (disk != 0 || cd_disk != 0) fail("multi-disk (split) archives are not supported", eocd);
  if (cd_off > n_ || cd_size > n_ - cd_off)
    fail("central directory (offset " + std::to_string(cd_off) + ", size " + std::to_string(cd_size) +
             ") lies outside the file",
         eocd);
  if (count > cd_size / 46) fail("central directory too small for " + std::to_string(count) + " entries", cd_off);
  entries_.reserve(count);
  std::uint64_t q = cd_off, end = cd_off + cd_size;
  for (std::uint64_t k = 0; k < count; ++k) {
    if (end - q < 46) fail("central directory truncated", q);
    if (rd(p_ + q, 4) != kCentralSig) fail("bad central directory entry signature", q);
    ZipEntry e;
    e.flags = rd(p_ + q + 8, 2);
    e.method = rd(p_ + q + 10, 2);
    e.crc32 = rd(p_ + q + 16, 4);
    e.compressed_size = rd(p_ + q + 20, 4);
    e.size = rd(p_ + q + 24, 4);
    std::uint64_t nlen = rd(p_ + q + 28, 2), xlen = rd(p_ + q + 30, 2), clen = rd(p_ + q + 32, 2);
    std::uint64_t edisk = rd(p_ + q + 34, 2);
    e.header_offset = rd(p_ + q + 42, 4);
    if (end - q - 46 < nlen + xlen + clen) fail("central directory entry overruns the directory", q);
    e.name.assign(reinterpret_cast<const char*>(p_ + q + 46), nlen);
    // ZIP64 extended information extra field.
    const std::uint8_t* x = p_ + q + 46 + nlen;
    for (std::uint64_t xo = 0; xo + 4 <= xlen;) {
      std::uint64_t id = rd(x + xo, 2), sz = rd(x + xo + 2, 2);
      if (xo + 4 + sz > xlen) fail("extra field overruns entry '" + e.name + "'", q);
      if (id == 0x0001) {
        std::uint64_t f = 0;
        auto next = [&](std::uint64_t& field, const char* what) {
          if (f + 8 > sz) fail(std::string("ZIP64 extra field lacks the ") + what + " of '" + e.name + "'", q);
          field = rd(x + xo + 4 + f, 8);
          f += 8;
        };
        if (e.size == 0xffffffff) next(e.size, "size");
        if (e.compressed_size == 0xffffffff) next(e.compressed_size, "compressed size");
        if (e.header_offset == 0xffffffff) next(e.header_offset, "header offset");
        if (edisk == 0xffff) { std::uint64_t d; if (f + 4 > sz) fail("bad ZIP64 disk field", q); d = rd(x + xo + 4 + f, 4); edisk = d; }
      }
      xo += 4 + sz;
    }
    if (edisk != 0) fail("entry '" + e.name + "' is on another disk", q);
    if (e.flags & 1) fail("entry '" + e.name + "' is encrypted", q);
    // Local header → data offset.
    std::uint64_t h = e.header_offset;
    if (h > n_ || n_ - h < 30) fail("local header of '" + e.name + "' lies outside the file", q);
    if (rd(p_ + h, 4) != kLocalSig) fail("bad local header signature for '" + e.name + "'", h);
    std::uint64_t lnlen = rd(p_ + h + 26, 2), lxlen = rd(p_ + h + 28, 2);
    e.data_offset = h + 30 + lnlen + lxlen;
    if (e.data_offset > n_ || e.compressed_size > n_ - e.data_offset)
      fail("data of '" + e.name + "' (" + std::to_string(e.compressed_size) + " bytes at offset " +
               std::to_string(e.data_offset) + ") lies outside the file (truncated?)",
           h);
    if (e.method == 0 && e.compressed_size != e.size)
      fail("stored entry '" + e.name + "' has different compressed and uncompressed sizes", q);
    index_.emplace(e.name, entries_.size());  // first wins
    entries_.push_back(std::move(e));
    q += 46 + nlen + xlen + clen;
  }
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const ZipEntry& ZipReader::at(std::string_view name) const {
  const ZipEntry* e = find(name);
  if (!e) throw FormatError(name_, "zip: missing record '" + std::string(name) + "'");
  return *e;
}

std::span<const std::uint8_t> ZipReader::stored(const ZipEntry& e) const {
  if (e.method != 0)
    fail("entry '" + e.name + "' is compressed (method " + std::to_string(e.method) +
             "); expected STORED",
         e.header_offset);
  return {p_ + e.data_offset, static_cast<std::size_t>(e.size)};
}

std::vector<std::uint8_t> ZipReader::read(const ZipEntry& e, std::uint64_t max_size) const {
  if (e.size > max_size)
    fail("entry '" + e.name + "' is too large (" + std::to_string(e.size) + " bytes)", e.header_offset);
  if (e.method == 0) {
    auto s = stored(e);
    return {s.begin(), s.end()};
  }
  if (e.method != 8)
    fail("entry '" + e.name + "' uses unsupported compression method " + std::to_string(e.method),
         e.header_offset);
  // A deflate stream expands at most ~1032x: refuse absurd claims before allocating.
  if (e.size / 1032 > e.compressed_size + 1)
    fail("entry '" + e.name + "' claims an impossible compression ratio", e.header_offset);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(e.size));
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) fail("zlib inflateInit failed", e.header_offset);
  std::uint64_t in_left = e.compressed_size, out_done = 0;
  const std::uint8_t* in = p_ + e.data_offset;
  int rc = Z_OK;
  while (true) {
    std::uint32_t cin = static_cast<std::uint32_t>(std::min<std::uint64_t>(in_left, 1u << 30));
    std::uint32_t cout = static_cast<std::uint32_t>(std::min<std::uint64_t>(e.size - out_done, 1u << 30));
    zs.next_in = const_cast<Bytef*>(in);
    zs.avail_in = cin;
    zs.next_out = out.data() + out_done;
    zs.avail_out = cout;
    rc = inflate(&zs, Z_NO_FLUSH);
    std::uint64_t used_in = cin - zs.avail_in, made = cout - zs.avail_out;
    in += used_in;
    in_left -= used_in;
    out_done += made;
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    if (used_in == 0 && made == 0) break;  // no progress: truncated or larger than declared
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || out_done != e.size)
    fail("entry '" + e.name + "': corrupt deflate data", e.data_offset);
  return out;
}

void ZipReader::verify_crc(const ZipEntry& e, std::span<const std::uint8_t> data) const {
  uLong c = crc32(0L, Z_NULL, 0);
  const std::uint8_t* d = data.data();
  std::size_t left = data.size();
  while (left) {
    uInt k = static_cast<uInt>(std::min<std::size_t>(left, 1u << 30));
    c = crc32(c, d, k);
    d += k;
    left -= k;
  }
  if (static_cast<std::uint32_t>(c) != e.crc32)
    fail("CRC-32 mismatch in entry '" + e.name + "' (file corrupt)", e.data_offset);
}

}  // namespace io
