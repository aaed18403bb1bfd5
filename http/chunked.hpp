#pragma once
// Incremental validator for a chunked message body (RFC 9112 §7.1). It never copies or decodes: it tells
// the caller how many of the bytes it was given belong to the body, so the proxy can forward them raw.
// Input may be split at any byte boundary; the result is the same however the body is fed.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace drainproxy::http {

class ChunkedFramer {
 public:
  // max_line bounds each chunk-size line (with extensions) and each trailer line; max_trailer_bytes bounds
  // the whole trailer section including its final CRLF.
  explicit ChunkedFramer(std::size_t max_line = 4096, std::size_t max_trailer_bytes = 16 * 1024);

  struct Result {
    std::size_t consumed = 0;  // bytes of `data` that belong to the body; on error, the valid prefix
    bool done = false;         // last-chunk, trailer section and final CRLF seen (bytes after it are not ours)
    bool error = false;        // the body is malformed; the framer stays failed until reset()
    std::string_view reason;   // static text when error
  };

  Result feed(std::string_view data);

  std::uint64_t payload_bytes() const { return payload_bytes_; }  // chunk-data bytes seen so far
  bool done() const { return state_ == State::Done; }
  bool failed() const { return state_ == State::Failed; }
  void reset();

 private:
  enum class State : std::uint8_t {
    SizeStart,        // first hex digit of a chunk-size
    SizeDigits,       // more hex digits, ';', BWS or CR
    SizeBws,          // BWS that must be followed by ';'
    ExtBeforeName,    // after ';'
    ExtName,          // chunk-ext-name
    ExtAfterName,     // BWS after a name: '=' or ';' must follow
    ExtBeforeValue,   // after '='
    ExtTokenValue,    // token chunk-ext-val
    ExtQuoted,        // inside a quoted-string chunk-ext-val
    ExtQuotedEscape,  // after '\' in a quoted-string
    ExtAfterQuoted,   // after the closing '"'
    SizeLf,           // LF ending the chunk-size line
    Data,             // chunk-data
    DataCr,           // CR after chunk-data
    DataLf,           // LF after chunk-data
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,  // LF of the empty line ending the body
    Done,
    Failed,
  };

  // One byte in any state but Data/Done/Failed; returns an error reason or an empty view.
  std::string_view step(char c);
  std::string_view end_of_trailer_name();

  static constexpr std::size_t kNameCapacity = 17;  // longest name we must recognise: "transfer-encoding"

  std::size_t max_line_;
  std::size_t max_trailer_bytes_;
  State state_ = State::SizeStart;
  unsigned size_digits_ = 0;
  std::uint64_t chunk_size_ = 0;  // size being parsed, then the bytes of chunk-data still to come
  std::size_t line_bytes_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::uint64_t payload_bytes_ = 0;
  std::array<char, kNameCapacity> name_{};  // lower-cased prefix of the current trailer field name
  std::size_t name_len_ = 0;
  std::string_view error_reason_;
};

}  // namespace drainproxy::http
