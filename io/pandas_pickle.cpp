// io/pandas_pickle.cpp — see pandas_pickle.h.
//
// The shapes decoded (pandas 1.1 .. 2.x pickles; `_mgr` may also be called `_data` in old ones):
//   DataFrame: NEWOBJ(DataFrame) + BUILD {"_mgr": BlockManager, ...}
//   BlockManager: REDUCE(BlockManager, (blocks tuple, [columns Index, row Index]))
//     or (older) NEWOBJ + BUILD (axes, values, items, {"0.14.1": {"axes", "blocks": [{values, mgr_locs}]}})
//   block: REDUCE(pandas._libs.internals._unpickle_block, (values, mgr_locs, ndim)) or a
//     new_block / make_block call with the same first arguments
//   values: numpy ndarray of shape (columns in the block, rows), as
//     numpy[._core|.core].multiarray._reconstruct(...) + BUILD (ver, shape, dtype, fortran, data)
//     or numpy[._core|.core].numeric._frombuffer(buffer, dtype, shape, order)
//   mgr_locs: builtins.slice(start, stop, step) or an int ndarray of column positions
//   columns: pandas.core.indexes.base._new_Index(Index, {"data": ndarray, "name": ...})
#include "io/pandas_pickle.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "io/errors.h"

namespace io {

using pickle::Kind;
using pickle::Value;

int DataFrame::find(const std::string& name) const {
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return int(i);
  return -1;
}

namespace {

struct Ctx {
  std::string path;
  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(path, "not a pandas DataFrame pickle this reader understands: " + what);
  }
};

bool is_numpy(const Value* v, const char* leaf, const char* name) {
  if (!v || v->kind != Kind::Global) return false;
  if (v->name != name) return false;
  return v->s == std::string("numpy.core.") + leaf || v->s == std::string("numpy._core.") + leaf;
}

struct Array {
  std::vector<std::int64_t> shape;
  char kind = 'O';  // numpy dtype kind: O, i, u, b, f
  int itemsize = 8;
  bool big_endian = false, fortran = false;
  std::vector<const Value*> objects;
  std::string bytes;
  // Number of elements; SIZE_MAX when the product overflows (it then matches no buffer).
  std::size_t count() const {
    std::size_t n = 1;
    for (auto d : shape)
      if (__builtin_mul_overflow(n, std::size_t(d), &n)) return SIZE_MAX;
    return n;
  }
};

void parse_dtype(const Ctx& c, const Value* dt, Array& a) {
  if (!dt || dt->kind != Kind::Object || !dt->cls || !dt->cls->is_global("numpy", "dtype") || !dt->args ||
      dt->args->items.empty() || dt->args->items[0]->kind != Kind::Str)
    c.fail("an array without a numpy dtype");
  std::string code = dt->args->items[0]->s;  // "i8", "O8", "f8", "b1", "u4", "<U5", ...
  if (code.empty()) c.fail("empty dtype code");
  a.kind = code[0];
  if (a.kind == 'O' || a.kind == 'i' || a.kind == 'u' || a.kind == 'b' || a.kind == 'f') {
    a.itemsize = code.size() > 1 ? std::atoi(code.c_str() + 1) : 1;
  } else {
    c.fail("unsupported column dtype '" + code + "'");
  }
  if (a.kind != 'O' && a.itemsize != 1 && a.itemsize != 2 && a.itemsize != 4 && a.itemsize != 8)
    c.fail("unsupported dtype '" + code + "'");
  if (a.kind == 'f' && a.itemsize < 4) c.fail("unsupported dtype '" + code + "'");
  // BUILD state (version, byteorder, ...)
  if (dt->state && dt->state->kind == Kind::Tuple && dt->state->items.size() >= 2 && dt->state->items[1]->is_str())
    a.big_endian = dt->state->items[1]->s == ">";
}

std::vector<std::int64_t> int_tuple(const Ctx& c, const Value* t, const char* what) {
  if (!t || !t->is_seq()) c.fail(std::string(what) + " is not a tuple");
  std::vector<std::int64_t> out;
  for (auto* v : t->items) {
    if (!v->is_int() || v->i < 0) c.fail(std::string(what) + " holds a non-integer");
    out.push_back(v->i);
  }
  return out;
}

Array parse_array(const Ctx& c, const Value* v) {
  Array a;
  if (!v || v->kind != Kind::Object || !v->cls) c.fail("expected a numpy array, found " + pickle::describe(v, 1));
  if (is_numpy(v->cls, "multiarray", "_reconstruct")) {
    const Value* st = v->state;
    if (!st || st->kind != Kind::Tuple || st->items.size() != 5) c.fail("ndarray without its state");
    a.shape = int_tuple(c, st->items[1], "ndarray shape");
    parse_dtype(c, st->items[2], a);
    a.fortran = st->items[3]->kind == Kind::Bool && st->items[3]->b;
    const Value* data = st->items[4];
    if (a.kind == 'O') {
      if (data->kind != Kind::List) c.fail("object ndarray without a list of cells");
      a.objects.assign(data->items.begin(), data->items.end());
    } else {
      if (data->kind != Kind::Bytes && data->kind != Kind::Str) c.fail("numeric ndarray without its bytes");
      a.bytes = data->s;
    }
  } else if (is_numpy(v->cls, "numeric", "_frombuffer")) {
    const Value* args = v->args;
    if (!args || args->kind != Kind::Tuple || args->items.size() != 4) c.fail("_frombuffer with unexpected arguments");
    if (args->items[0]->kind != Kind::Bytes) c.fail("_frombuffer without an in-band buffer");
    a.bytes = args->items[0]->s;
    parse_dtype(c, args->items[1], a);
    a.shape = int_tuple(c, args->items[2], "ndarray shape");
    a.fortran = args->items[3]->is_str() && args->items[3]->s == "F";
    if (a.kind == 'O') c.fail("object array in a raw buffer");
  } else {
    std::string type = v->cls->class_name();
    // Extension arrays come as e.g. __pyx_unpickle_NDArrayBacked(Categorical, ...): name the class.
    if (v->args && v->args->is_seq() && !v->args->items.empty() && v->args->items[0]->kind == Kind::Global)
      type = v->args->items[0]->class_name() + " (" + type + ")";
    c.fail("unsupported column type " + type + ": extension dtypes (categorical, pyarrow strings, ...) "
           "are not supported; convert the column to plain object/str first (df[col].astype(object))");
  }
  if (a.kind == 'O') {
    if (a.objects.size() != a.count()) c.fail("object ndarray with a wrong number of cells");
  } else if (a.count() > a.bytes.size() || a.bytes.size() != a.count() * std::size_t(a.itemsize)) {
    c.fail("numeric ndarray whose buffer does not match its shape");
  }
  return a;
}

// Element k (flat, storage order) of a numeric array, as int64 or double.
std::int64_t int_at(const Array& a, std::size_t k) {
  unsigned char b[8];
  std::memcpy(b, a.bytes.data() + k * a.itemsize, a.itemsize);
  if (a.big_endian)
    for (int i = 0; i < a.itemsize / 2; ++i) std::swap(b[i], b[a.itemsize - 1 - i]);
  std::uint64_t u = 0;
  for (int i = a.itemsize - 1; i >= 0; --i) u = (u << 8) | b[i];
  if (a.kind == 'i' && a.itemsize < 8 && (u >> (a.itemsize * 8 - 1)) & 1) u |= ~std::uint64_t(0) << (a.itemsize * 8);
  return std::int64_t(u);
}
double float_at(const Array& a, std::size_t k) {
  std::int64_t bits = int_at(a, k);
  if (a.itemsize == 4) {
    std::uint32_t u = std::uint32_t(bits);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

std::vector<std::string> index_names(const Ctx& c, const Value* idx) {
  // _new_Index(Index, {"data": ndarray, "name": ...})
  if (!idx || idx->kind != Kind::Object || !idx->cls || !idx->cls->is_global("pandas.core.indexes.base", "_new_Index") ||
      !idx->args || idx->args->items.size() < 2)
    c.fail("columns are not a plain Index (" + pickle::describe(idx, 1) + ")");
  const Value* cls = idx->args->items[0];
  if (cls->kind == Kind::Global && cls->name != "Index")
    c.fail("columns are a " + cls->name + ", not a plain Index of names");
  const Value* d = idx->args->items[1];
  const Value* data = d->get("data");
  if (!data) c.fail("column Index without data");
  Array a = parse_array(c, data);
  std::vector<std::string> names;
  for (std::size_t k = 0; k < a.count(); ++k) {
    if (a.kind == 'O') {
      const Value* v = a.objects[k];
      if (v->is_str()) names.push_back(v->s);
      else if (v->is_int()) names.push_back(std::to_string(v->i));
      else c.fail("a column name is not a string");
    } else if (a.kind == 'i' || a.kind == 'u') {
      names.push_back(std::to_string(int_at(a, k)));
    } else {
      c.fail("column names of an unsupported dtype");
    }
  }
  return names;
}

std::vector<std::int64_t> placement(const Ctx& c, const Value* locs, std::size_t ncols) {
  std::vector<std::int64_t> out;
  if (locs && locs->kind == Kind::Object && locs->cls && locs->cls->is_global("builtins", "slice") && locs->args &&
      locs->args->items.size() == 3) {
    auto* s0 = locs->args->items[0];
    auto* s1 = locs->args->items[1];
    auto* s2 = locs->args->items[2];
    std::int64_t start = s0->is_int() ? s0->i : 0, stop = s1->is_int() ? s1->i : std::int64_t(ncols),
                 step = s2->is_int() ? s2->i : 1;
    if (step <= 0 || start < 0 || stop > std::int64_t(ncols)) c.fail("bad block placement slice");
    for (auto i = start; i < stop; i += step) out.push_back(i);
    return out;
  }
  if (locs && locs->kind == Kind::Object && locs->cls && locs->cls->class_name().find("BlockPlacement") != std::string::npos &&
      locs->args && !locs->args->items.empty())
    return placement(c, locs->args->items[0], ncols);
  Array a = parse_array(c, locs);
  if (a.kind != 'i' && a.kind != 'u') c.fail("block placement is not integers");
  for (std::size_t k = 0; k < a.count(); ++k) {
    auto i = int_at(a, k);
    if (i < 0 || i >= std::int64_t(ncols)) c.fail("block placement out of range");
    out.push_back(i);
  }
  return out;
}

void add_block(const Ctx& c, DataFrame& df, const Value* values, const Value* locs, std::vector<bool>& filled) {
  Array a = parse_array(c, values);
  auto cols = placement(c, locs, df.names.size());
  std::size_t ncols = cols.size();
  if (a.shape.size() == 1) a.shape = {1, a.shape[0]};
  if (a.shape.size() != 2 || std::size_t(a.shape[0]) != ncols) c.fail("a block's shape does not match its columns");
  std::size_t rows = std::size_t(a.shape[1]);
  if (df.rows == std::size_t(-1)) df.rows = rows;
  if (rows != df.rows) c.fail("blocks of different lengths");
  for (std::size_t j = 0; j < ncols; ++j) {
    auto& col = df.columns[cols[j]];
    if (filled[cols[j]]) c.fail("a column is in two blocks");
    filled[cols[j]] = true;
    for (std::size_t r = 0; r < rows; ++r) {
      std::size_t k = a.fortran ? r * ncols + j : j * rows + r;
      switch (a.kind) {
        case 'O': col.type = DataFrameColumn::Type::Object, col.objects.push_back(a.objects[k]); break;
        case 'f': col.type = DataFrameColumn::Type::Float, col.floats.push_back(float_at(a, k)); break;
        case 'b': col.type = DataFrameColumn::Type::Bool, col.ints.push_back(int_at(a, k) != 0); break;
        default: col.type = DataFrameColumn::Type::Int, col.ints.push_back(int_at(a, k)); break;
      }
    }
  }
}

}  // namespace

DataFrame read_pandas_pickle(const std::string& path) {
  Ctx c{path};
  DataFrame df;
  df.doc = pickle::parse_file(path);
  const Value* root = df.doc.root;
  if (!root || !root->is_object_of("pandas.core.frame", "DataFrame"))
    c.fail("the pickle holds " + pickle::describe(root, 1) + ", not a pandas.core.frame.DataFrame");
  const Value* mgr = root->get("_mgr");
  if (!mgr) mgr = root->get("_data");
  if (!mgr || mgr->kind != Kind::Object || !mgr->cls || mgr->cls->class_name().find("BlockManager") == std::string::npos)
    c.fail("no BlockManager in the DataFrame (" + pickle::describe(mgr, 1) + ")");

  const Value* blocks = nullptr;  // tuple/list of block objects (new form) or list of dicts (old)
  const Value* axes = nullptr;
  bool old_form = false;
  if (mgr->args && mgr->args->kind == Kind::Tuple && mgr->args->items.size() == 2) {
    blocks = mgr->args->items[0];
    axes = mgr->args->items[1];
  } else if (mgr->state && mgr->state->kind == Kind::Tuple && mgr->state->items.size() == 4) {
    const Value* extra = mgr->state->items[3]->get("0.14.1");
    if (!extra) c.fail("BlockManager state without the 0.14.1 layout");
    axes = extra->get("axes");
    blocks = extra->get("blocks");
    old_form = true;
  }
  if (!blocks || !blocks->is_seq() || !axes || !axes->is_seq() || axes->items.size() != 2)
    c.fail("a BlockManager without blocks and two axes");
  df.names = index_names(c, axes->items[0]);
  df.columns.resize(df.names.size());
  df.rows = std::size_t(-1);
  std::vector<bool> filled(df.names.size(), false);
  for (const Value* b : blocks->items) {
    if (old_form) {
      add_block(c, df, b->get("values"), b->get("mgr_locs"), filled);
      continue;
    }
    if (!b || b->kind != Kind::Object || !b->args || b->args->items.size() < 2)
      c.fail("a block is not _unpickle_block(values, placement, ndim) (" + pickle::describe(b, 1) + ")");
    add_block(c, df, b->args->items[0], b->args->items[1], filled);
  }
  for (std::size_t i = 0; i < filled.size(); ++i)
    if (!filled[i]) c.fail("column '" + df.names[i] + "' is in no block");
  if (df.rows == std::size_t(-1)) df.rows = 0;
  return df;
}

}  // namespace io
