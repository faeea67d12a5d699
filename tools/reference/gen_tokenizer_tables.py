#!/usr/bin/env python3
"""Generate ulmfit/tok_tables.inc from the REAL reference libraries in ../refenv:

  * spaCy 3.8.7 blank("en") tokenizer as fastai 2.7.19's SpacyTokenizer builds it
    (prefix/suffix/infix regex alternatives, compiled into a tiny node program; every
    character class expanded to code point ranges; the special-case table incl. fastai's
    9 special tokens; which special cases spaCy also registers in its PhraseMatcher),
  * spaCy's ALPHA_LOWER class (URL_MATCH's TLD),
  * Python's html.entities.html5 table and html's invalid-charref tables,
  * the code points for which Python's str.isspace() is true.

Usage:  ../refenv/bin/python tools/reference/gen_tokenizer_tables.py > ulmfit/tok_tables.inc
"""
import html
import html.entities
import re
import re._parser as P
import re._constants as C
import sys

import spacy
from fastai.text.core import SpacyTokenizer
from spacy.lang.char_classes import ALPHA_LOWER
from spacy.symbols import ORTH

assert spacy.__version__ == "3.8.7", spacy.__version__

stok = SpacyTokenizer()
nlp = stok.pipe.__self__
tokenizer = nlp.tokenizer
assert tokenizer.token_match is None
D = nlp.Defaults


def cstr(s):
    """A C string literal holding s as UTF-8 (octal escapes: never ambiguous)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if 32 <= b < 127 and c not in '"\\?':
            out.append(c)
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


# ------------------------------------------------------------------ char classes
classes = []          # list of tuple(ranges)
class_index = {}


def norm_ranges(rs):
    rs = sorted(rs)
    out = []
    for a, b in rs:
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def add_class(ranges):
    key = norm_ranges(ranges)
    if key not in class_index:
        class_index[key] = len(classes)
        classes.append(key)
    return class_index[key]


def class_of(node):
    op, av = node
    if op == C.LITERAL:
        return add_class([(av, av)])
    if op == C.IN:
        rs = []
        for iop, iav in av:
            if iop == C.LITERAL:
                rs.append((iav, iav))
            elif iop == C.RANGE:
                rs.append(iav)
            else:
                raise SystemExit("unsupported class item %r" % ((iop, iav),))
        return add_class(rs)
    raise SystemExit("not a single-char node: %r" % (node,))


# ------------------------------------------------------------------ node programs
# op codes (mirrored in tokenizer.cpp)
OP_LB, OP_CLS, OP_REP, OP_BR, OP_LA, OP_NLA = range(6)
nodes = []      # (op, a, b, c)
lb_lists = []   # flat class ids for lookbehinds
strs = []       # u32 literal strings for branches
str_index = {}
br_lists = []   # flat string ids


def add_str(s):
    if s not in str_index:
        str_index[s] = len(strs)
        strs.append(s)
    return str_index[s]


def compile_alt(pattern):
    tree = list(P.parse(pattern))
    out = []
    for op, av in tree:
        if op in (C.LITERAL, C.IN):
            out.append((OP_CLS, class_of((op, av)), 0, 0))
        elif op == C.MAX_REPEAT:
            lo, hi, sub = av
            sub = list(sub)
            assert len(sub) == 1, pattern
            out.append((OP_REP, class_of(sub[0]), lo, -1 if hi == C.MAXREPEAT else hi))
        elif op == C.ASSERT or op == C.ASSERT_NOT:
            direction, sub = av
            sub = list(sub)
            if direction == -1:
                assert op == C.ASSERT, pattern
                ids = [class_of(n) for n in sub]
                out.append((OP_LB, len(lb_lists), len(ids), 0))
                lb_lists.extend(ids)
            else:
                assert len(sub) == 1, pattern
                out.append((OP_LA if op == C.ASSERT else OP_NLA, class_of(sub[0]), 0, 0))
        elif op == C.SUBPATTERN or op == C.BRANCH:
            sub = list(av[-1]) if op == C.SUBPATTERN else [(op, av)]
            assert len(sub) == 1, pattern
            bop, bav = sub[0]
            if bop == C.BRANCH:
                ids = []
                for item in bav[1]:
                    s = ""
                    for iop, iav in item:
                        assert iop == C.LITERAL, pattern
                        s += chr(iav)
                    ids.append(add_str(s))
                out.append((OP_BR, len(br_lists), len(ids), 0))
                br_lists.extend(ids)
            elif bop in (C.LITERAL, C.IN):
                out.append((OP_CLS, class_of(sub[0]), 0, 0))
            else:
                raise SystemExit("unsupported subpattern in %r" % pattern)
        else:
            raise SystemExit("unsupported node %r in %r" % (op, pattern))
    start = len(nodes)
    nodes.extend(out)
    return (start, len(out))


def alts(entries):
    # spaCy's compile_*_regex drop entries with piece.strip() == ""
    return [compile_alt(e) for e in entries if e.strip()]


prefix_alts = alts(D.prefixes)
suffix_alts = alts(D.suffixes)
infix_alts = alts(D.infixes)
# sanity: the compiled regexes are exactly the ones the tokenizer uses
assert tokenizer.prefix_search.__self__.pattern == "|".join("^" + p for p in D.prefixes if p.strip())
assert tokenizer.suffix_search.__self__.pattern == "|".join(p + "$" for p in D.suffixes if p.strip())
assert tokenizer.infix_finditer.__self__.pattern == "|".join(p for p in D.infixes if p.strip())

alpha_lower_cls = class_of(list(P.parse("[" + ALPHA_LOWER + "]"))[0])

# ------------------------------------------------------------------ special cases
rules = tokenizer.rules
specials = []
for key in sorted(rules):
    pieces = [d[ORTH] if ORTH in d else d["ORTH"] for d in rules[key]]
    assert "".join(pieces) == key, (key, pieces)
    in_matcher = bool(tokenizer.find_prefix(key) or tokenizer.find_infix(key)
                      or tokenizer.find_suffix(key) or " " in key)
    specials.append((key, pieces, in_matcher))
for t in ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]:
    assert t in rules

# ------------------------------------------------------------------ emit
w = sys.stdout.write
w("// GENERATED by tools/reference/gen_tokenizer_tables.py from spaCy %s, fastai's\n"
  "// SpacyTokenizer and Python %s html.entities. Do not edit.\n" % (spacy.__version__, sys.version.split()[0]))
w("// NOLINTBEGIN\n")
w("namespace ulmfit::tok_tables {\n\n")

flat = []
offs = []
for rs in classes:
    offs.append((len(flat) // 2, len(rs)))
    for a, b in rs:
        flat += [a, b]
w("inline constexpr unsigned kClassRanges[] = {\n")
for i in range(0, len(flat), 12):
    w("  " + ", ".join("0x%X" % v for v in flat[i:i + 12]) + ",\n")
w("};\n")
w("struct ClassSpan { unsigned first_range, n_ranges; };\n")
w("inline constexpr ClassSpan kClasses[] = {\n")
for o, n in offs:
    w("  {%d, %d},\n" % (o, n))
w("};\n")
w("inline constexpr int kAlphaLowerClass = %d;\n\n" % alpha_lower_cls)

w("struct Node { int op, a, b, c; };  // op: 0 LB, 1 CLS, 2 REP, 3 BR, 4 LA, 5 NLA\n")
w("inline constexpr Node kNodes[] = {\n")
for n in nodes:
    w("  {%d, %d, %d, %d},\n" % n)
w("};\n")
w("inline constexpr int kLookbehindClasses[] = {%s};\n" % ", ".join(map(str, lb_lists or [0])))
w("inline constexpr int kBranchStrings[] = {%s};\n" % ", ".join(map(str, br_lists or [0])))
pool = []
soffs = []
for s in strs:
    soffs.append((len(pool), len(s)))
    pool += [ord(c) for c in s]
w("inline constexpr char32_t kStringPool[] = {%s};\n" % ", ".join("0x%X" % v for v in pool))
w("struct StrSpan { int off, len; };\n")
w("inline constexpr StrSpan kStrings[] = {%s};\n" % ", ".join("{%d, %d}" % x for x in soffs))
w("struct Alt { int first_node, n_nodes; };\n")
for name, lst in (("kPrefixAlts", prefix_alts), ("kSuffixAlts", suffix_alts), ("kInfixAlts", infix_alts)):
    w("inline constexpr Alt %s[] = {%s};\n" % (name, ", ".join("{%d, %d}" % x for x in lst)))
w("\n")

w("// spaCy special cases: key, in_phrase_matcher, pieces (NUL-separated, list ends with an empty piece)\n")
w("struct Special { const char* key; bool in_matcher; const char* pieces; unsigned pieces_len; };\n")
w("inline constexpr Special kSpecials[] = {\n")
for key, pieces, inm in specials:
    joined = "\0".join(pieces)
    w("  {%s, %s, %s, %d},\n" % (cstr(key), "true" if inm else "false", cstr(joined),
                                 len(joined.encode("utf-8"))))
w("};\n\n")

ents = sorted(html.entities.html5.items())
w("// Python html.entities.html5 (name incl. ';' where the standard has it) -> replacement\n")
w("struct Entity { const char* name; const char* value; };\n")
w("inline constexpr Entity kHtml5[] = {\n")
for k, v in ents:
    w("  {%s, %s},\n" % (cstr(k), cstr(v)))
w("};\n")
w("struct CharRef { unsigned code; unsigned replacement; };\n")
w("inline constexpr CharRef kInvalidCharrefs[] = {\n")
for k, v in sorted(html._invalid_charrefs.items()):
    assert len(v) == 1
    w("  {0x%X, 0x%X},\n" % (k, ord(v)))
w("};\n")
w("inline constexpr unsigned kInvalidCodepoints[] = {%s};\n" %
  ", ".join("0x%X" % c for c in sorted(html._invalid_codepoints)))
space = [c for c in range(0x110000) if chr(c).isspace()]
w("// code points with Python str.isspace() (== re's \\s on str)\n")
w("inline constexpr unsigned kPySpace[] = {%s};\n" % ", ".join("0x%X" % c for c in space))
w("\n}  // namespace ulmfit::tok_tables\n// NOLINTEND\n")
print("classes=%d nodes=%d specials=%d entities=%d" % (len(classes), len(nodes), len(specials), len(ents)),
      file=sys.stderr)
