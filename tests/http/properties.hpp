#pragma once
// Properties every input must satisfy, whatever its bytes: shared by the seeded unit test
// (tests/http/properties_test.cpp) and the coverage-guided fuzzers (fuzz/).
// Each returns an empty string when the input passes, else what went wrong.
#include <string>
#include <string_view>

namespace drainproxy::http::properties {

// A request head: errors are 4xx/5xx with a reason; a complete head is incomplete one byte
// shorter and unchanged by what follows it; and the head the proxy forwards parses back to the
// same method, target, host and body framing (a mismatch would let a request smuggle another).
std::string check_request(std::string_view bytes);

// A response head answering a request of kind `kind_byte % 3` (regular, HEAD, CONNECT): errors
// are 502; a complete head is incomplete one byte shorter; and the head the proxy forwards, in
// every combination of closing and client version, frames the body exactly as the app's did.
std::string check_response(unsigned char kind_byte, std::string_view bytes);

// A chunked body gives the same verdict and the same byte counts however it is split.
std::string check_chunked(unsigned split_seed, std::string_view bytes);

}  // namespace drainproxy::http::properties
