// ulmfit/tokenizer.cpp — fastai 2.7.19 rules + spaCy 3.8.7 blank-"en" tokenizer (see tokenizer.h).
//
// Everything works on code points (std::u32string), as Python's str does. The spaCy affix
// regexes are not interpreted by a regex engine: tools/reference/gen_tokenizer_tables.py parses
// the real spaCy patterns with Python's own regex parser and compiles each alternative into a
// short node program (lookbehind / char class / greedy repeat / literal branch / lookahead),
// which match_alt() below runs with Python `re` backtracking semantics.
#include "ulmfit/tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ulmfit/tok_tables.inc"

namespace ulmfit {
namespace {

namespace T = tok_tables;
using U32 = std::u32string;
using U32V = std::u32string_view;

// ============================================================================ UTF-8
U32 decode_utf8(std::string_view s) {
  U32 out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  auto fail = [&](std::size_t at, const char* why) {
    throw TextError("invalid UTF-8 at byte offset " + std::to_string(at) + ": " + why, at);
  };
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      out.push_back(c);
      ++i;
      continue;
    }
    int len;
    char32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else if (c >= 0x80 && c <= 0xBF) {
      fail(i, "unexpected continuation byte");
    } else {
      fail(i, "byte can never appear in UTF-8 (overlong lead or > U+10FFFF)");
    }
    if (i + len > n) fail(i, "truncated multi-byte sequence at end of text");
    for (int k = 1; k < len; ++k) {
      unsigned cc = p[i + k];
      if ((cc & 0xC0) != 0x80) fail(i + k, "expected a continuation byte");
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (len == 3 && cp < 0x800) fail(i, "overlong 3-byte sequence");
    if (len == 4 && cp < 0x10000) fail(i, "overlong 4-byte sequence");
    if (cp > 0x10FFFF) fail(i, "code point above U+10FFFF");
    if (cp >= 0xD800 && cp <= 0xDFFF) fail(i, "encoded UTF-16 surrogate");
    out.push_back(cp);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(U32V s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// Trusted (generated, valid) UTF-8 -> code points.
U32 decode_trusted(std::string_view s) { return decode_utf8(s); }

// ============================================================================ Unicode predicates
// Python str.isspace() / re's \s on str: generated from Python itself (29 code points).
bool py_isspace_slow(char32_t c) {
  return std::binary_search(std::begin(T::kPySpace), std::end(T::kPySpace), static_cast<unsigned>(c));
}
__attribute__((always_inline)) inline bool py_isspace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c != 0x85 && c != 0xA0 && c < 0x1680) return false;
  return py_isspace_slow(c);
}

inline utf8proc_category_t category(char32_t c) {
  return static_cast<utf8proc_category_t>(utf8proc_category(static_cast<utf8proc_int32_t>(c)));
}

// Python re's \w on str: str.isalnum() or '_' (Unicode letters and numbers).
inline bool py_isword(char32_t c) {
  if (c < 0x80) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  switch (category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// Python re's \d on str: Unicode decimal digits (Nd).
inline bool py_isdecimal(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return category(c) == UTF8PROC_CATEGORY_ND;
}

// Unicode "Cased" (Lowercase | Uppercase | Lt) and "Case_Ignorable", as CPython uses them for the
// final-sigma rule of str.lower().
inline bool is_cased(char32_t c) {
  auto cat = category(c);
  if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT)
    return true;
  return utf8proc_islower(static_cast<utf8proc_int32_t>(c)) ||
         utf8proc_isupper(static_cast<utf8proc_int32_t>(c));
}
inline bool is_case_ignorable(char32_t c) {
  switch (c) {  // Word_Break = MidLetter | MidNumLet | Single_Quote
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018:
    case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07:
    case 0xFF0E: case 0xFF1A:
      return true;
    default:
      break;
  }
  auto cat = category(c);
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK;
}

// Python str.lower() of s (full mapping: U+0130 -> "i\u0307"; final sigma in the context of s).
void py_lower_append(U32V s, U32& out) {
  const std::size_t n = s.size();
  std::size_t i = 0;
  {
    // ASCII run fast path
    std::size_t j = 0;
    while (j < n && s[j] < 0x80) ++j;
    std::size_t base = out.size();
    out.resize(base + j);
    char32_t* o = out.data() + base;
    for (std::size_t k = 0; k < j; ++k) {
      char32_t c = s[k];
      o[k] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
    }
    i = j;
  }
  for (; i < n; ++i) {
    char32_t c = s[i];
    if (c < 0x80) {
      out.push_back((c >= 'A' && c <= 'Z') ? c + 32 : c);
    } else if (c == 0x130) {
      out.push_back(U'i');
      out.push_back(0x307);
    } else if (c == 0x3A3) {
      std::size_t j = i;
      char32_t pc = 0;
      bool found = false;
      while (j > 0) {
        pc = s[j - 1];
        if (!is_case_ignorable(pc)) { found = true; break; }
        --j;
      }
      bool final_sigma = found && is_cased(pc);
      if (final_sigma && i + 1 < n) {
        std::size_t k = i + 1;
        while (k < n && is_case_ignorable(s[k])) ++k;
        final_sigma = (k == n) || !is_cased(s[k]);
      }
      out.push_back(final_sigma ? 0x3C2 : 0x3C3);
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
}

// ============================================================================ fastai rules
void replace_all(U32& s, U32V from, U32V to) {
  if (s.size() < from.size()) return;
  std::size_t pos = s.find(from);
  if (pos == U32::npos) return;
  U32 out;
  out.reserve(s.size() + 16);
  std::size_t copy = 0;
  while (pos != U32::npos) {
    out.append(s, copy, pos - copy);
    out.append(to);
    copy = pos + from.size();
    pos = s.find(from, copy);
  }
  out.append(s, copy, U32::npos);
  s.swap(out);
}

void append_ascii(U32& out, std::string_view a) {
  for (char ch : a) out.push_back(static_cast<unsigned char>(ch));
}

// ---- html.unescape
const char* lookup_entity(std::string_view name) {
  auto* b = std::begin(T::kHtml5);
  auto* e = std::end(T::kHtml5);
  auto* it = std::lower_bound(b, e, name, [](const T::Entity& x, std::string_view k) {
    return std::string_view(x.name) < k;
  });
  if (it != e && std::string_view(it->name) == name) return it->value;
  return nullptr;
}

void append_numeric_ref(U32& out, std::uint64_t num) {
  for (const auto& r : T::kInvalidCharrefs) {
    if (r.code == num) {
      out.push_back(r.replacement);
      return;
    }
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
    out.push_back(0xFFFD);
    return;
  }
  if (std::binary_search(std::begin(T::kInvalidCodepoints), std::end(T::kInvalidCodepoints),
                         static_cast<unsigned>(num)))
    return;
  out.push_back(static_cast<char32_t>(num));
}

inline bool is_hex(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

U32 html_unescape_u32(const U32& s) {
  if (s.find(U'&') == U32::npos) return s;
  U32 out;
  out.reserve(s.size());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    char32_t c = s[i];
    if (c != U'&') {
      out.push_back(c);
      ++i;
      continue;
    }
    std::size_t p = i + 1;
    // '#' [0-9]+ ';'?   |   '#' [xX] [0-9a-fA-F]+ ';'?
    if (p < n && s[p] == U'#') {
      std::size_t q = p + 1;
      bool hex = false;
      std::size_t ds = q;
      if (q < n && s[q] >= '0' && s[q] <= '9') {
        while (q < n && s[q] >= '0' && s[q] <= '9') ++q;
      } else if (q + 1 < n && (s[q] == 'x' || s[q] == 'X') && is_hex(s[q + 1])) {
        hex = true;
        ds = q + 1;
        q = ds;
        while (q < n && is_hex(s[q])) ++q;
      } else {
        out.push_back(c);  // '&#' not followed by a number: no match ('#' ends a name)
        ++i;
        continue;
      }
      std::uint64_t num = 0;
      for (std::size_t k = ds; k < q; ++k) {
        char32_t d = s[k];
        unsigned v = (d <= '9') ? d - '0' : (d | 0x20) - 'a' + 10;
        num = num * (hex ? 16 : 10) + v;
        if (num > 0x10FFFF) num = 0x110000;  // saturate: any larger value maps to U+FFFD
      }
      if (q < n && s[q] == U';') ++q;
      append_numeric_ref(out, num);
      i = q;
      continue;
    }
    // [^\t\n\f <&#;]{1,32} ';'?
    std::size_t q = p;
    while (q < n && q - p < 32) {
      char32_t d = s[q];
      if (d == '\t' || d == '\n' || d == '\f' || d == ' ' || d == '<' || d == '&' || d == '#' ||
          d == ';')
        break;
      ++q;
    }
    if (q == p) {
      out.push_back(c);
      ++i;
      continue;
    }
    if (q < n && s[q] == U';') ++q;
    std::string name = encode_utf8(U32V(s).substr(p, q - p));
    if (const char* v = lookup_entity(name)) {
      out += decode_trusted(v);
    } else {
      // longest matching prefix (in code points), at least 2 long
      bool done = false;
      const std::size_t len = q - p;
      for (std::size_t x = len - 1; x >= 2 && len >= 1; --x) {
        std::string pre = encode_utf8(U32V(s).substr(p, x));
        if (const char* v2 = lookup_entity(pre)) {
          out += decode_trusted(v2);
          out.append(s, p + x, len - x);
          done = true;
          break;
        }
      }
      if (!done) out.append(s, i, q - i);
    }
    i = q;
  }
  return out;
}

void fix_html(U32& s) {
  // Sequential str.replace calls, exactly in fastai's order; a group is skipped when a character
  // that every pattern in it contains is absent (replacements never introduce that character
  // before the group runs, so skipping cannot change the result).
  bool semi = false, bslash = false, lt = false, at = false, dot = false;
  for (char32_t c : s) {
    semi |= (c == U';');
    bslash |= (c == U'\\');
    lt |= (c == U'<');
    at |= (c == U'@');
    dot |= (c == U'.');
  }
  if (semi) {
    replace_all(s, U"#39;", U"'");
    replace_all(s, U"amp;", U"&");
    replace_all(s, U"#146;", U"'");
    replace_all(s, U"nbsp;", U" ");
    replace_all(s, U"#36;", U"$");
  }
  if (bslash) replace_all(s, U"\\n", U"\n");
  if (semi) replace_all(s, U"quot;", U"'");
  if (lt) replace_all(s, U"<br />", U"\n");
  if (bslash) replace_all(s, U"\\\"", U"\"");
  if (lt) replace_all(s, U"<unk>", U"xxunk");
  if (at) {
    replace_all(s, U" @.@ ", U".");
    replace_all(s, U" @-@ ", U"-");
  }
  if (dot || at) replace_all(s, U"...", U" \u2026");
  s = html_unescape_u32(s);
}

// (\S)(\1{2,})  ->  " xxrep N c "
void replace_rep(U32& s) {
  {
    bool any = false;
    for (std::size_t i = 2; i < s.size() && !any; ++i) any = (s[i] == s[i - 1] && s[i] == s[i - 2]);
    if (!any) return;
  }
  U32 out;
  out.reserve(s.size() + 16);
  const std::size_t n = s.size();
  bool changed = false;
  std::size_t i = 0;
  while (i < n) {
    char32_t c = s[i];
    if (py_isspace(c)) {
      out.push_back(c);
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    while (j < n && s[j] == c) ++j;
    if (j - i >= 3) {
      append_ascii(out, " xxrep " + std::to_string(j - i) + " ");
      out.push_back(c);
      out.push_back(U' ');
      changed = true;
    } else {
      out.append(s, i, j - i);
    }
    i = j;
  }
  if (changed) s.swap(out);
}

// (?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)  ->  " xxwrep N w E"
void replace_wrep(U32& s) {
  const std::size_t n = s.size();
  U32 out;
  bool changed = false;
  std::size_t copy = 0, pos = 0;
  while (pos < n) {
    std::size_t ws;
    if (py_isspace(s[pos])) {
      ws = pos + 1;
    } else if (pos == 0) {
      ws = 0;
    } else {
      ++pos;
      continue;
    }
    std::size_t we = ws;
    while (we < n && py_isword(s[we])) ++we;
    const std::size_t wl = we - ws;
    bool matched = false;
    std::size_t end = 0, count = 0, e_begin = 0, e_len = 0;
    if (wl > 0 && we < n && py_isspace(s[we])) {
      U32V w(s.data() + ws, wl);
      std::size_t p = we;
      while (p < n && py_isspace(s[p])) ++p;
      // greedy repetitions of (w \s+)
      std::size_t m = 0, last_rep_start = 0;
      while (p + wl < n && U32V(s.data() + p, wl) == w && py_isspace(s[p + wl])) {
        last_rep_start = p;
        p += wl;
        while (p < n && py_isspace(s[p])) ++p;
        ++m;
      }
      if (m >= 1) {
        // r = m: final \1 at p, then (\s|\W|$)
        if (p + wl <= n && U32V(s.data() + p, wl) == w) {
          std::size_t a = p + wl;
          if (a == n) {
            matched = true; end = a; e_begin = a; e_len = 0; count = m + 2;
          } else if (py_isspace(s[a]) || !py_isword(s[a])) {
            matched = true; end = a + 1; e_begin = a; e_len = 1; count = m + 2;
          }
        }
        if (!matched && m >= 2) {
          // r = m-1: final \1 is the last repetition, followed by whitespace
          std::size_t a = last_rep_start + wl;
          matched = true; end = a + 1; e_begin = a; e_len = 1; count = m + 1;
        }
      }
      if (matched) {
        out.append(s, copy, pos - copy);
        append_ascii(out, " xxwrep " + std::to_string(count) + " ");
        out.append(w);
        out.push_back(U' ');
        out.append(s, e_begin, e_len);
        copy = pos = end;
        changed = true;
        continue;
      }
    }
    ++pos;
  }
  if (changed) {
    out.append(s, copy, U32::npos);
    s.swap(out);
  }
}

// ([/#\\]) -> " \1 "
void spec_add_spaces(U32& s) {
  std::size_t k = 0;
  for (char32_t c : s) k += (c == '/' || c == '#' || c == '\\');
  if (k == 0) return;
  U32 out;
  out.reserve(s.size() + 2 * k);
  for (char32_t c : s) {
    if (c == '/' || c == '#' || c == '\\') {
      out.push_back(U' ');
      out.push_back(c);
      out.push_back(U' ');
    } else {
      out.push_back(c);
    }
  }
  s.swap(out);
}

// ' {2,}' -> ' '
void rm_useless_spaces(U32& s) {
  if (U32V(s).find(U"  ") == U32V::npos) return;
  U32 out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == U' ' && !out.empty() && out.back() == U' ' && i > 0 && s[i - 1] == U' ') continue;
    out.push_back(s[i]);
  }
  s.swap(out);
}

// (\s|^)(CHUNK)(?=(\s|$)) where the chunk is a whole whitespace-delimited run accepted by pred.
template <class Pred>
void replace_case_chunks(U32& s, Pred pred, std::string_view marker) {
  const std::size_t n = s.size();
  U32 out;
  bool changed = false;
  std::size_t copy = 0, pos = 0;
  while (pos < n) {
    std::size_t cs;
    if (py_isspace(s[pos])) {
      cs = pos + 1;
    } else if (pos == 0) {
      cs = 0;
    } else {
      ++pos;
      continue;
    }
    std::size_t ce = cs;
    while (ce < n && !py_isspace(s[ce])) ++ce;
    if (ce > cs && pred(U32V(s.data() + cs, ce - cs))) {
      out.append(s, copy, cs - copy);
      if (ce - cs > 1) append_ascii(out, marker);
      py_lower_append(U32V(s.data() + cs, ce - cs), out);
      copy = pos = ce;
      changed = true;
      continue;
    }
    ++pos;
  }
  if (changed) {
    out.append(s, copy, U32::npos);
    s.swap(out);
  }
}

inline bool ascii_upper(char32_t c) { return c >= 'A' && c <= 'Z'; }
inline bool ascii_lower(char32_t c) { return c >= 'a' && c <= 'z'; }

void replace_all_caps(U32& s) {
  replace_case_chunks(
      s,
      [](U32V c) {
        if (!ascii_upper(c[0])) return false;
        for (char32_t x : c)
          if (ascii_lower(x)) return false;
        return true;
      },
      "xxup ");
}

void replace_maj(U32& s) {
  replace_case_chunks(
      s,
      [](U32V c) {
        if (!ascii_upper(c[0])) return false;
        for (std::size_t i = 1; i < c.size(); ++i)
          if (ascii_upper(c[i])) return false;
        return true;
      },
      "xxmaj ");
}

U32 lowercase_rule(const U32& s) {
  U32 low;
  low.reserve(s.size() + 8);
  py_lower_append(s, low);
  std::size_t b = 0, e = low.size();
  while (b < e && py_isspace(low[b])) ++b;
  while (e > b && py_isspace(low[e - 1])) --e;
  U32 out = U"xxbos ";
  out.append(low, b, e - b);
  return out;
}

U32 apply_rules_u32(U32 s) {
  fix_html(s);
  replace_rep(s);
  replace_wrep(s);
  spec_add_spaces(s);
  rm_useless_spaces(s);
  replace_all_caps(s);
  replace_maj(s);
  return lowercase_rule(s);
}

// ============================================================================ spaCy tokenizer
struct U32Hash {
  using is_transparent = void;
  std::size_t operator()(U32V v) const noexcept { return std::hash<U32V>{}(v); }
  std::size_t operator()(const U32& v) const noexcept { return std::hash<U32V>{}(v); }
};
struct U32Eq {
  using is_transparent = void;
  bool operator()(U32V a, U32V b) const noexcept { return a == b; }
};

struct Tok {
  std::uint32_t b, e;  // code point range in the text
  bool space;          // followed by one absorbed U+0020 (spaCy's token.whitespace_)
};

struct MatcherPattern {
  std::vector<U32> toks;
};

class SpacyEn {
 public:
  SpacyEn() {
    build_classes();
    build_suffix_info();
    build_dispatch(T::kPrefixAlts, prefix_dispatch_);
    build_dispatch(T::kSuffixAlts, suffix_dispatch_);
    build_dispatch(T::kInfixAlts, infix_dispatch_);
    if (suffix_info_.size() > 128) throw std::logic_error("tokenizer tables: too many suffix rules");
    for (const auto& sp : T::kSpecials) {
      U32 key = decode_trusted(sp.key);
      std::vector<std::uint32_t> lens;
      std::string_view pieces(sp.pieces, sp.pieces_len);
      std::size_t st = 0;
      while (true) {
        std::size_t z = pieces.find('\0', st);
        std::string_view piece = pieces.substr(st, z == std::string_view::npos ? std::string_view::npos : z - st);
        lens.push_back(static_cast<std::uint32_t>(decode_trusted(piece).size()));
        if (z == std::string_view::npos) break;
        st = z + 1;
      }
      max_special_len_ = std::max(max_special_len_, key.size());
      special_filter_.add(key);
      specials_.emplace(key, std::move(lens));
    }
    // spaCy also registers in a PhraseMatcher the special cases whose key has an affix, an
    // infix or a space, with the pattern = its tokenization WITHOUT special cases.
    for (const auto& sp : T::kSpecials) {
      if (!sp.in_matcher) continue;
      U32 key = decode_trusted(sp.key);
      std::vector<Tok> toks;
      tokenize_text(key, toks, /*with_specials=*/false);
      MatcherPattern pat;
      for (const Tok& t : toks) pat.toks.emplace_back(key.substr(t.b, t.e - t.b));
      if (pat.toks.empty()) continue;
      patterns_by_first_[pat.toks[0]].push_back(patterns_.size());
      pattern_filter_.add(pat.toks[0]);
      patterns_.push_back(std::move(pat));
    }
  }

  // Full spaCy call: affix tokenization + special-case pass.
  void tokenize(const U32& text, std::vector<Tok>& toks) const {
    tokenize_text(text, toks, true);
    apply_special_cases(text, toks);
  }

 private:
  // ---------------------------------------------------------------- char classes
  struct Class {
    std::array<std::uint64_t, 2> ascii{};
    const unsigned* ranges = nullptr;  // pairs
    unsigned n = 0;
  };
  std::vector<Class> classes_;

  void build_classes() {
    const std::size_t nc = sizeof(T::kClasses) / sizeof(T::kClasses[0]);
    classes_.resize(nc);
    for (std::size_t k = 0; k < nc; ++k) {
      Class& c = classes_[k];
      c.ranges = T::kClassRanges + 2 * T::kClasses[k].first_range;
      c.n = T::kClasses[k].n_ranges;
      for (unsigned r = 0; r < c.n; ++r) {
        for (unsigned x = c.ranges[2 * r]; x <= c.ranges[2 * r + 1] && x < 128; ++x)
          c.ascii[x >> 6] |= (1ull << (x & 63));
      }
    }
  }

  bool in_class(int k, char32_t cp) const {
    const Class& c = classes_[k];
    if (cp < 128) return (c.ascii[cp >> 6] >> (cp & 63)) & 1;
    unsigned lo = 0, hi = c.n;
    while (lo < hi) {  // first range with end >= cp
      unsigned mid = (lo + hi) / 2;
      if (c.ranges[2 * mid + 1] < cp) lo = mid + 1; else hi = mid;
    }
    return lo < c.n && c.ranges[2 * lo] <= cp;
  }

  // ---------------------------------------------------------------- node programs
  // Returns the end position of a match of nodes[k..] starting at pos, or -1. The subject
  // string is s[b, e): lookbehind/lookahead cannot see outside it (Python matches a slice).
  long match_nodes(const char32_t* s, long b, long e, int k, int kend, long pos, bool anchored) const {
    if (k == kend) return (!anchored || pos == e) ? pos : -1;
    const T::Node& nd = T::kNodes[k];
    switch (nd.op) {
      case 0: {  // lookbehind: fixed sequence of classes ending at pos
        long cnt = nd.b;
        if (pos - cnt < b) return -1;
        for (long j = 0; j < cnt; ++j)
          if (!in_class(T::kLookbehindClasses[nd.a + j], s[pos - cnt + j])) return -1;
        return match_nodes(s, b, e, k + 1, kend, pos, anchored);
      }
      case 1:  // one char in class
        if (pos < e && in_class(nd.a, s[pos])) return match_nodes(s, b, e, k + 1, kend, pos + 1, anchored);
        return -1;
      case 2: {  // greedy repeat {b, c} (c == -1: unbounded)
        long m = 0;
        while (pos + m < e && (nd.c < 0 || m < nd.c) && in_class(nd.a, s[pos + m])) ++m;
        for (long c = m; c >= nd.b; --c) {
          long r = match_nodes(s, b, e, k + 1, kend, pos + c, anchored);
          if (r >= 0) return r;
        }
        return -1;
      }
      case 3: {  // ordered alternation of literal strings
        for (int j = 0; j < nd.b; ++j) {
          const auto& st = T::kStrings[T::kBranchStrings[nd.a + j]];
          if (pos + st.len > e) continue;
          if (std::memcmp(s + pos, T::kStringPool + st.off, st.len * sizeof(char32_t)) != 0) continue;
          long r = match_nodes(s, b, e, k + 1, kend, pos + st.len, anchored);
          if (r >= 0) return r;
        }
        return -1;
      }
      case 4:  // lookahead
        if (pos < e && in_class(nd.a, s[pos])) return match_nodes(s, b, e, k + 1, kend, pos, anchored);
        return -1;
      case 5:  // negative lookahead
        if (pos < e && in_class(nd.a, s[pos])) return -1;
        return match_nodes(s, b, e, k + 1, kend, pos, anchored);
      default:
        return -1;
    }
  }

  // First-character dispatch: for each ASCII char, the (ordered) alternatives whose first
  // consumed character can be it; one list for all non-ASCII chars.
  struct Dispatch {
    std::array<std::vector<int>, 128> ascii;
    std::vector<int> other;
    const std::vector<int>& for_char(char32_t c) const { return c < 128 ? ascii[c] : other; }
  };
  Dispatch prefix_dispatch_, suffix_dispatch_, infix_dispatch_;

  bool class_has_non_ascii(int k) const {
    const Class& c = classes_[k];
    return c.n > 0 && c.ranges[2 * (c.n - 1) + 1] >= 128;
  }

  template <std::size_t N>
  void build_dispatch(const T::Alt (&alts)[N], Dispatch& d) {
    for (std::size_t a = 0; a < N; ++a) {
      std::array<bool, 128> asc{};
      bool other = false;
      int k = alts[a].first_node, kend = k + alts[a].n_nodes;
      while (k < kend && (T::kNodes[k].op == 0 || T::kNodes[k].op == 4 || T::kNodes[k].op == 5)) ++k;
      if (k == kend) {
        asc.fill(true);
        other = true;
      } else {
        const T::Node& nd = T::kNodes[k];
        if (nd.op == 1 || (nd.op == 2 && nd.b >= 1)) {
          for (char32_t c = 0; c < 128; ++c) asc[c] = in_class(nd.a, c);
          other = class_has_non_ascii(nd.a);
        } else if (nd.op == 3) {
          for (int j = 0; j < nd.b; ++j) {
            const auto& st = T::kStrings[T::kBranchStrings[nd.a + j]];
            char32_t c0 = st.len ? T::kStringPool[st.off] : 0;
            if (st.len == 0) { asc.fill(true); other = true; }
            else if (c0 < 128) asc[c0] = true;
            else other = true;
          }
        } else {
          asc.fill(true);
          other = true;
        }
      }
      for (int c = 0; c < 128; ++c)
        if (asc[c]) d.ascii[c].push_back(static_cast<int>(a));
      if (other) d.other.push_back(static_cast<int>(a));
    }
  }

  long find_prefix(const char32_t* s, long b, long e) const {
    if (b >= e) return 0;
    for (int a : prefix_dispatch_.for_char(s[b])) {
      const auto& alt = T::kPrefixAlts[a];
      long r = match_nodes(s, b, e, alt.first_node, alt.first_node + alt.n_nodes, b, false);
      if (r >= 0) return r - b;
    }
    return 0;
  }

  // Length bounds of what an alternative consumes; an unbounded alternative must end with its
  // only unbounded repeat (true for spaCy's `\.\.+`), so a match lies within the trailing run
  // of that repeat's class plus the bounded part before it.
  struct AltInfo {
    long min_len = 0, max_len = 0;  // max_len < 0: unbounded
    int tail_class = -1;
    long bounded_before_tail = 0;
  };
  std::vector<AltInfo> suffix_info_;

  void build_suffix_info() {
    for (const auto& alt : T::kSuffixAlts) {
      AltInfo in;
      for (int k = alt.first_node; k < alt.first_node + alt.n_nodes; ++k) {
        const T::Node& nd = T::kNodes[k];
        if (in.max_len < 0) throw std::logic_error("tokenizer tables: unbounded repeat not last");
        if (nd.op == 1) {
          in.min_len += 1;
          in.max_len += 1;
        } else if (nd.op == 2) {
          in.min_len += nd.b;
          if (nd.c < 0) {
            in.bounded_before_tail = in.max_len;
            in.tail_class = nd.a;
            in.max_len = -1;
          } else {
            in.max_len += nd.c;
          }
        } else if (nd.op == 3) {
          long lo = 1L << 30, hi = 0;
          for (int j = 0; j < nd.b; ++j) {
            long l = T::kStrings[T::kBranchStrings[nd.a + j]].len;
            lo = std::min(lo, l);
            hi = std::max(hi, l);
          }
          in.min_len += lo;
          in.max_len += hi;
        }
      }
      suffix_info_.push_back(in);
    }
  }

  long find_suffix(const char32_t* s, long b, long e) const {
    // re.search of "alt1$|alt2$|...": the earliest start at which any alternative matches wins.
    const std::size_t na = suffix_info_.size();
    long lo_start = e;
    long lo_alt[128];
    for (std::size_t a = 0; a < na; ++a) {
      const AltInfo& in = suffix_info_[a];
      long lo;
      if (in.max_len >= 0) {
        lo = e - in.max_len;
      } else {
        long t = 0;
        while (e - t - 1 >= b && in_class(in.tail_class, s[e - t - 1])) ++t;
        lo = e - t - in.bounded_before_tail;
      }
      lo_alt[a] = std::max(lo, b);
      lo_start = std::min(lo_start, lo_alt[a]);
    }
    for (long i = lo_start; i < e; ++i) {
      for (int a : suffix_dispatch_.for_char(s[i])) {
        if (i < lo_alt[a] || e - i < suffix_info_[a].min_len) continue;
        const auto& alt = T::kSuffixAlts[a];
        if (match_nodes(s, b, e, alt.first_node, alt.first_node + alt.n_nodes, i, true) >= 0) return e - i;
      }
    }
    return 0;
  }

  void find_infixes(const char32_t* s, long b, long e, std::vector<std::pair<long, long>>& out) const {
    out.clear();
    long pos = b;
    while (pos < e) {
      long r = -1;
      for (int a : infix_dispatch_.for_char(s[pos])) {
        const auto& alt = T::kInfixAlts[a];
        r = match_nodes(s, b, e, alt.first_node, alt.first_node + alt.n_nodes, pos, false);
        if (r >= 0) break;
      }
      if (r > pos) {
        out.emplace_back(pos, r);
        pos = r;
      } else {
        ++pos;
      }
    }
  }

  // ---------------------------------------------------------------- URL_MATCH
  bool in_L(char32_t c) const {  // [A-Za-z0-9\u00a1-\uffff]
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c >= 0xA1 && c <= 0xFFFF);
  }

  bool rest_ok(const char32_t* s, long p, long n, long first_space) const {
    // (?::\d{2,5})?(?:[/?#]\S*)?$
    if (p == n) return true;
    if (s[p] == ':') {
      long k = 0;
      while (p + 1 + k < n && py_isdecimal(s[p + 1 + k])) ++k;
      if (k < 2 || k > 5) return false;
      p = p + 1 + k;
      if (p == n) return true;
    }
    if (s[p] == '/' || s[p] == '?' || s[p] == '#') return first_space < 0 || first_space <= p;
    return false;
  }

  // all digits: Unicode \d; returns the possible lengths of a regex octet alternative set
  static void octet_first(const char32_t* s, long p, long n, std::vector<long>& lens) {
    // [1-9]\d? | 1\d\d | 2[01]\d | 22[0-3]
    auto d = [&](long i) { return i < n && py_isdecimal(s[i]); };
    auto ch = [&](long i, char lo, char hi) { return i < n && s[i] >= (char32_t)lo && s[i] <= (char32_t)hi; };
    if (ch(p, '1', '9')) {
      if (d(p + 1)) lens.push_back(2);
      lens.push_back(1);
    }
    if (ch(p, '1', '1') && d(p + 1) && d(p + 2)) lens.push_back(3);
    if (ch(p, '2', '2') && ch(p + 1, '0', '1') && d(p + 2)) lens.push_back(3);
    if (ch(p, '2', '2') && ch(p + 1, '2', '2') && ch(p + 2, '0', '3')) lens.push_back(3);
  }
  static void octet_mid(const char32_t* s, long p, long n, std::vector<long>& lens) {
    // 1?\d{1,2} | 2[0-4]\d | 25[0-5]
    auto d = [&](long i) { return i < n && py_isdecimal(s[i]); };
    auto ch = [&](long i, char lo, char hi) { return i < n && s[i] >= (char32_t)lo && s[i] <= (char32_t)hi; };
    if (ch(p, '1', '1')) {
      if (d(p + 1) && d(p + 2)) lens.push_back(3);
      if (d(p + 1)) lens.push_back(2);
    }
    if (d(p)) {
      if (d(p + 1)) lens.push_back(2);
      lens.push_back(1);
    }
    if (ch(p, '2', '2') && ch(p + 1, '0', '4') && d(p + 2)) lens.push_back(3);
    if (ch(p, '2', '2') && ch(p + 1, '5', '5') && ch(p + 2, '0', '5')) lens.push_back(3);
  }
  static void octet_last(const char32_t* s, long p, long n, std::vector<long>& lens) {
    // [1-9]\d? | 1\d\d | 2[0-4]\d | 25[0-4]
    auto d = [&](long i) { return i < n && py_isdecimal(s[i]); };
    auto ch = [&](long i, char lo, char hi) { return i < n && s[i] >= (char32_t)lo && s[i] <= (char32_t)hi; };
    if (ch(p, '1', '9')) {
      if (d(p + 1)) lens.push_back(2);
      lens.push_back(1);
    }
    if (ch(p, '1', '1') && d(p + 1) && d(p + 2)) lens.push_back(3);
    if (ch(p, '2', '2') && ch(p + 1, '0', '4') && d(p + 2)) lens.push_back(3);
    if (ch(p, '2', '2') && ch(p + 1, '5', '5') && ch(p + 2, '0', '4')) lens.push_back(3);
  }

  // (?:\.\d{1,3}){k} as a prefix at p
  static bool dotted(const char32_t* s, long p, long n, int k) {
    for (int j = 0; j < k; ++j) {
      if (p >= n || s[p] != '.') return false;
      long d = 0;
      while (p + 1 + d < n && py_isdecimal(s[p + 1 + d])) ++d;
      if (d == 0) return false;
      if (j + 1 < k && d > 3) return false;
      p += 1 + std::min<long>(d, 3);
    }
    return true;
  }
  static bool lit(const char32_t* s, long p, long n, const char* t) {
    for (; *t; ++t, ++p)
      if (p >= n || s[p] != static_cast<unsigned char>(*t)) return false;
    return true;
  }

  bool ip_then_rest(const char32_t* s, long h, long n, long fs) const {
    if ((lit(s, h, n, "10") && dotted(s, h + 2, n, 3)) || (lit(s, h, n, "127") && dotted(s, h + 3, n, 3)))
      return false;
    if ((lit(s, h, n, "169.254") || lit(s, h, n, "192.168")) && dotted(s, h + 7, n, 2)) return false;
    if (lit(s, h, n, "172.")) {
      long p = h + 4;
      bool second = (p + 1 < n) && ((s[p] == '1' && s[p + 1] >= '6' && s[p + 1] <= '9') ||
                                    (s[p] == '2' && py_isdecimal(s[p + 1])) ||
                                    (s[p] == '3' && s[p + 1] >= '0' && s[p + 1] <= '1'));
      if (second && dotted(s, p + 2, n, 2)) return false;
    }
    std::vector<long> l1;
    octet_first(s, h, n, l1);
    for (long a : l1) {
      long p1 = h + a;
      if (p1 >= n || s[p1] != '.') continue;
      std::vector<long> l2;
      octet_mid(s, p1 + 1, n, l2);
      for (long b2 : l2) {
        long p2 = p1 + 1 + b2;
        if (p2 >= n || s[p2] != '.') continue;
        std::vector<long> l3;
        octet_mid(s, p2 + 1, n, l3);
        for (long b3 : l3) {
          long p3 = p2 + 1 + b3;
          if (p3 >= n || s[p3] != '.') continue;
          std::vector<long> l4;
          octet_last(s, p3 + 1, n, l4);
          for (long b4 : l4)
            if (rest_ok(s, p3 + 1 + b4, n, fs)) return true;
        }
      }
    }
    return false;
  }

  bool host_then_rest(const char32_t* s, long h, long n, long fs) const {
    if (h < n && py_isdecimal(s[h]) && ip_then_rest(s, h, n, fs)) return true;
    long p = h;
    while (true) {
      long q = p;
      while (q < n && (in_L(s[q]) || s[q] == '_' || s[q] == '-')) ++q;
      if (q >= n || s[q] != '.') return false;
      long len = q - p;
      if (len < 1 || len > 64 || !in_L(s[p]) || !in_L(s[q - 1])) return false;
      long t0 = q + 1, te = t0;
      while (te < n && te - t0 <= 63 && in_class(T::kAlphaLowerClass, s[te])) ++te;
      long r = te - t0;
      if (r >= 2 && r <= 63 && rest_ok(s, te, n, fs)) return true;
      p = q + 1;
    }
  }

  bool url_match(const char32_t* s, long n) const {
    if (n < 4) return false;  // shortest URL: "a.bc"
    {
      bool dot = false;  // a host name or an IPv4 address always contains '.'
      for (long i = 0; i < n && !dot; ++i) dot = (s[i] == U'.');
      if (!dot) return false;
    }
    long fs = -1;  // last whitespace position
    for (long i = 0; i < n; ++i)
      if (py_isspace(s[i])) fs = i;
    // [\w+\-.]{2,}://  (optional)
    long starts[2];
    int nstarts = 0;
    long k = 0;
    while (k < n && (py_isword(s[k]) || s[k] == '+' || s[k] == '-' || s[k] == '.')) ++k;
    if (k >= 2 && k + 3 <= n && s[k] == ':' && s[k + 1] == '/' && s[k + 2] == '/') starts[nstarts++] = k + 3;
    starts[nstarts++] = 0;
    for (int si = 0; si < nstarts; ++si) {
      const long st = starts[si];
      if (host_then_rest(s, st, n, fs)) return true;
      // \S+(?::\S*)?@  ==  \S+@
      for (long j = st + 1; j < n; ++j) {
        if (py_isspace(s[j]) ) break;
        if (s[j] == '@' && !py_isspace(s[st]) && host_then_rest(s, j + 1, n, fs)) return true;
      }
    }
    return false;
  }

  // ---------------------------------------------------------------- special cases
  std::unordered_map<U32, std::vector<std::uint32_t>, U32Hash, U32Eq> specials_;
  std::size_t max_special_len_ = 0;
  std::vector<MatcherPattern> patterns_;
  std::unordered_map<U32, std::vector<std::size_t>, U32Hash, U32Eq> patterns_by_first_;

  // Prefilter before hashing: a 64 Kbit Bloom-style bitset over (first char, last char, length).
  struct LenFilter {
    std::vector<std::uint64_t> bits = std::vector<std::uint64_t>(1024, 0);
    static unsigned slot(const char32_t* s, std::size_t len) {
      std::uint32_t h = static_cast<std::uint32_t>(s[0]) * 0x9E3779B1u;
      h ^= static_cast<std::uint32_t>(s[len - 1]) * 0x85EBCA77u;
      h ^= static_cast<std::uint32_t>(len) * 0xC2B2AE3Du;
      return (h ^ (h >> 16)) & 0xFFFF;
    }
    void add(U32V k) {
      if (k.empty()) return;
      unsigned x = slot(k.data(), k.size());
      bits[x >> 6] |= 1ull << (x & 63);
    }
    bool may_contain(const char32_t* s, std::size_t len) const {
      if (len == 0) return false;
      unsigned x = slot(s, len);
      return (bits[x >> 6] >> (x & 63)) & 1;
    }
  };
  LenFilter special_filter_, pattern_filter_;

  const std::vector<std::uint32_t>* special(const char32_t* s, long b, long e) const {
    if (static_cast<std::size_t>(e - b) > max_special_len_ || e <= b) return nullptr;
    if (!special_filter_.may_contain(s + b, static_cast<std::size_t>(e - b))) return nullptr;
    auto it = specials_.find(U32V(s + b, e - b));
    return it == specials_.end() ? nullptr : &it->second;
  }

  static void push_special(std::vector<Tok>& toks, long b, const std::vector<std::uint32_t>& lens) {
    std::uint32_t p = static_cast<std::uint32_t>(b);
    for (std::uint32_t l : lens) {
      toks.push_back({p, p + l, false});
      p += l;
    }
  }

  // ---------------------------------------------------------------- the tokenizer proper
  struct Scratch {
    std::vector<std::pair<long, long>> prefixes, suffixes, infixes;
  };

  void tokenize_span(const char32_t* s, long b, long e, std::vector<Tok>& toks, bool with_specials,
                     Scratch& scratch) const {
    if (with_specials) {
      if (const auto* sp = special(s, b, e)) {
        push_special(toks, b, *sp);
        return;
      }
    }
    // _split_affixes
    auto& prefixes = scratch.prefixes;
    auto& suffixes = scratch.suffixes;
    prefixes.clear();
    suffixes.clear();
    std::size_t last_size = 0;
    while (e > b && static_cast<std::size_t>(e - b) != last_size) {
      if (with_specials && last_size != 0 && special(s, b, e)) break;  // 1st pass: checked above
      last_size = static_cast<std::size_t>(e - b);
      long pre = find_prefix(s, b, e);
      if (pre != 0) {
        if (b + pre < e && with_specials && special(s, b + pre, e)) {
          prefixes.emplace_back(b, b + pre);
          b += pre;
          break;
        }
      }
      long suf = find_suffix(s, b + pre, e);
      if (suf != 0) {
        if (e - suf > b && with_specials && special(s, b, e - suf)) {
          suffixes.emplace_back(e - suf, e);
          e -= suf;
          break;
        }
      }
      if (pre && suf && pre + suf <= e - b) {
        prefixes.emplace_back(b, b + pre);
        suffixes.emplace_back(e - suf, e);
        b += pre;
        e -= suf;
      } else if (pre) {
        prefixes.emplace_back(b, b + pre);
        b += pre;
      } else if (suf) {
        suffixes.emplace_back(e - suf, e);
        e -= suf;
      }
    }
    // _attach_tokens
    for (auto& p : prefixes) toks.push_back({(std::uint32_t)p.first, (std::uint32_t)p.second, false});
    if (e > b) {
      const std::vector<std::uint32_t>* sp = with_specials ? special(s, b, e) : nullptr;
      if (sp) {
        push_special(toks, b, *sp);
      } else if (url_match(s + b, e - b)) {
        toks.push_back({(std::uint32_t)b, (std::uint32_t)e, false});
      } else {
        auto& inf = scratch.infixes;
        find_infixes(s, b, e, inf);
        if (inf.empty()) {
          toks.push_back({(std::uint32_t)b, (std::uint32_t)e, false});
        } else {
          long start = b;
          for (auto& m : inf) {
            if (m.first == b) continue;  // infix at the very start is skipped
            if (m.first != start) toks.push_back({(std::uint32_t)start, (std::uint32_t)m.first, false});
            if (m.first != m.second) toks.push_back({(std::uint32_t)m.first, (std::uint32_t)m.second, false});
            start = m.second;
          }
          if (start < e) toks.push_back({(std::uint32_t)start, (std::uint32_t)e, false});
        }
      }
    }
    for (auto it = suffixes.rbegin(); it != suffixes.rend(); ++it)
      toks.push_back({(std::uint32_t)it->first, (std::uint32_t)it->second, false});
  }

  // Tokenizer._tokenize_affixes: whitespace segmentation + per-span tokenization.
  void tokenize_text(const U32& text, std::vector<Tok>& toks, bool with_specials) const {
    toks.clear();
    const long n = static_cast<long>(text.size());
    if (n == 0) return;
    const char32_t* s = text.data();
    Scratch scratch;
    bool in_ws = py_isspace(s[0]);
    long start = 0;
    for (long i = 0; i < n; ++i) {
      char32_t uc = s[i];
      if (py_isspace(uc) != in_ws) {
        if (start < i) tokenize_span(s, start, i, toks, with_specials, scratch);
        if (uc == U' ') {
          if (!toks.empty()) toks.back().space = true;
          start = i + 1;
        } else {
          start = i;
        }
        in_ws = !in_ws;
      }
    }
    if (start < n) {
      tokenize_span(s, start, n, toks, with_specials, scratch);
      toks.back().space = (s[n - 1] == U' ') && !in_ws;
    }
  }

  // Tokenizer._apply_special_cases (PhraseMatcher over the affix tokenizations of the keys).
  void apply_special_cases(const U32& text, std::vector<Tok>& toks) const {
    struct SpanM { long start, end; };
    std::vector<SpanM> matches;
    const long nt = static_cast<long>(toks.size());
    for (long i = 0; i < nt; ++i) {
      if (!pattern_filter_.may_contain(text.data() + toks[i].b, toks[i].e - toks[i].b)) continue;
      U32V first(text.data() + toks[i].b, toks[i].e - toks[i].b);
      auto it = patterns_by_first_.find(first);
      if (it == patterns_by_first_.end()) continue;
      for (std::size_t pi : it->second) {
        const auto& pat = patterns_[pi].toks;
        long L = static_cast<long>(pat.size());
        if (i + L > nt) continue;
        bool ok = true;
        for (long j = 1; j < L && ok; ++j)
          ok = U32V(text.data() + toks[i + j].b, toks[i + j].e - toks[i + j].b) == pat[j];
        if (ok) matches.push_back({i, i + L});
      }
    }
    if (matches.empty()) return;
    // _filter_special_spans: longest first, then leftmost; a span is kept if neither its first
    // nor its last token was covered by an earlier-considered span.
    std::sort(matches.begin(), matches.end(), [](const SpanM& a, const SpanM& b) {
      long la = a.end - a.start, lb = b.end - b.start;
      if (la != lb) return la > lb;
      return a.start < b.start;
    });
    std::vector<char> seen(nt, 0);
    std::vector<SpanM> kept;
    for (const auto& m : matches) {
      if (!seen[m.start] && !seen[m.end - 1]) kept.push_back(m);
      for (long j = m.start; j < m.end; ++j) seen[j] = 1;
    }
    std::sort(kept.begin(), kept.end(), [](const SpanM& a, const SpanM& b) { return a.start < b.start; });
    std::vector<Tok> out;
    out.reserve(toks.size());
    long i = 0;
    std::size_t k = 0;
    while (i < nt) {
      while (k < kept.size() && kept[k].start < i) ++k;
      if (k == kept.size() || kept[k].start != i) {
        out.push_back(toks[i]);
        ++i;
        continue;
      }
      const SpanM m = kept[k++];
      // span.text: tokens joined with their trailing spaces, minus the last one's
      U32 stext;
      for (long j = m.start; j < m.end; ++j) {
        stext.append(text, toks[j].b, toks[j].e - toks[j].b);
        if (toks[j].space && j + 1 < m.end) stext.push_back(U' ');
      }
      auto it = specials_.find(stext);
      if (it == specials_.end()) {
        for (long j = m.start; j < m.end; ++j) out.push_back(toks[j]);
      } else {
        std::size_t before = out.size();
        push_special(out, toks[m.start].b, it->second);
        out.back().space = toks[m.end - 1].space;
        (void)before;
      }
      i = m.end;
    }
    toks.swap(out);
  }
};

const SpacyEn& spacy_en() {
  static const SpacyEn instance;  // immutable after construction (thread-safe magic static)
  return instance;
}

std::vector<std::string> to_strings(const U32& text, const std::vector<Tok>& toks, bool replace_space) {
  std::vector<std::string> out;
  out.reserve(toks.size());
  for (const Tok& t : toks) {
    std::string s;
    s.reserve(t.e - t.b);
    for (std::uint32_t i = t.b; i < t.e; ++i) {
      if (replace_space && text[i] == U' ') append_utf8(s, 0x2581);
      else append_utf8(s, text[i]);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

std::string html_unescape(std::string_view text) { return encode_utf8(html_unescape_u32(decode_utf8(text))); }

std::string apply_fastai_rules(std::string_view text) { return encode_utf8(apply_rules_u32(decode_utf8(text))); }

std::vector<std::string> spacy_tokenize(std::string_view text) {
  U32 t = decode_utf8(text);
  std::vector<Tok> toks;
  spacy_en().tokenize(t, toks);
  return to_strings(t, toks, false);
}

std::vector<std::string> tokenize(std::string_view text, TokenizeMode mode) {
  U32 t = apply_rules_u32(decode_utf8(text));
  std::vector<Tok> toks;
  spacy_en().tokenize(t, toks);
  return to_strings(t, toks, mode == TokenizeMode::Train);
}

}  // namespace ulmfit
