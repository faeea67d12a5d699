#include "ulmfit/default_model.h"

#ifdef INSPIRE_HAVE_DEFAULT_MODEL
extern "C" const unsigned char inspire_default_model_start[];
extern "C" const unsigned char inspire_default_model_end[];
#endif

namespace ulmfit {

std::string_view default_model_bytes() {
#ifdef INSPIRE_HAVE_DEFAULT_MODEL
  return std::string_view(reinterpret_cast<const char*>(inspire_default_model_start),
                          static_cast<size_t>(inspire_default_model_end - inspire_default_model_start));
#else
  return {};
#endif
}

std::string default_model_origin() {
#ifdef INSPIRE_DEFAULT_MODEL_ORIGIN
  return INSPIRE_DEFAULT_MODEL_ORIGIN;
#else
  return "";
#endif
}

}  // namespace ulmfit
