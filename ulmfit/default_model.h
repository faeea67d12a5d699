// ulmfit/default_model.h — the model embedded in the binary at build time.
//
// CMake embeds the file named by -DINSPIRE_DEFAULT_MODEL=PATH (default: models/default.safetensors
// when it exists) into the executable with an assembler .incbin, 64-byte aligned, so the bundle
// reader can use it in place like an mmapped file. Commands use it whenever --model is not given.
#pragma once

#include <string>
#include <string_view>

namespace ulmfit {

// The embedded bundle's bytes, or an empty view when this build embeds no model.
std::string_view default_model_bytes();
// Where the embedded model came from at build time (file name), or "" when none.
std::string default_model_origin();

}  // namespace ulmfit
