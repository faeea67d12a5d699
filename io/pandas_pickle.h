// io/pandas_pickle.h — read a pandas DataFrame from a `DataFrame.to_pickle` file (pandas 1.x and
// 2.x, numpy 1.x and 2.x) with the safe, inert unpickler of io/pickle.h: nothing is imported or
// called; the object graph (DataFrame → BlockManager → blocks of numpy arrays, Index of column
// names) is decoded by hand.
//
// Supported column dtypes: object (str, None, float NaN, int, bool cells), int8..int64,
// uint8..uint64, bool, float32/float64. Other layouts (extension arrays such as the pyarrow
// string dtype, categoricals, MultiIndex columns) are refused with io::FormatError naming the
// file and what was found.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/pickle.h"

namespace io {

struct DataFrameColumn {
  enum class Type { Object, Int, Float, Bool } type = Type::Object;
  std::vector<const pickle::Value*> objects;  // Object: one cell per row
  std::vector<std::int64_t> ints;             // Int and Bool (0/1)
  std::vector<double> floats;                 // Float
};

struct DataFrame {
  pickle::Document doc;  // owns the cells of Object columns
  std::vector<std::string> names;          // column names, in order
  std::vector<DataFrameColumn> columns;    // same order
  std::size_t rows = 0;
  // Index of the column called `name`, or -1.
  int find(const std::string& name) const;
};

// Throws io::FormatError ("<path>: not a pandas DataFrame pickle: ...").
DataFrame read_pandas_pickle(const std::string& path);

}  // namespace io
