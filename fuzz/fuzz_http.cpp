// libFuzzer entry for the properties of tests/http/properties.hpp. Built three times by
// scripts/fuzz.sh, with DRAINPROXY_FUZZ_TARGET naming the property: request, response, chunked.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "properties.hpp"

namespace props = drainproxy::http::properties;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string problem;
#if DRAINPROXY_FUZZ_TARGET == 1
  problem = props::check_request(in);
#else
  // The first byte picks the request kind (responses) or the split (chunked bodies).
  if (in.empty()) return 0;
  const auto selector = static_cast<unsigned char>(in.front());
#if DRAINPROXY_FUZZ_TARGET == 2
  problem = props::check_response(selector, in.substr(1));
#else
  problem = props::check_chunked(selector, in.substr(1));
#endif
#endif
  if (!problem.empty()) {
    std::fprintf(stderr, "property violated: %s\n", problem.c_str());
    std::abort();  // libFuzzer saves the input as crash-<sha1>
  }
  return 0;
}
