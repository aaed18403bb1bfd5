#include "http/chunked.hpp"

#include <algorithm>
#include <limits>

#include "http/syntax.hpp"

namespace drainproxy::http {
namespace {

constexpr unsigned kMaxSizeDigits = 16;  // 16 hex digits fill a uint64_t

namespace reasons {
constexpr std::string_view kBareLf = "bare LF in chunked body";
constexpr std::string_view kBareCr = "bare CR in chunked body";
constexpr std::string_view kMissingSize = "missing chunk size";
constexpr std::string_view kInvalidSize = "invalid chunk size";
constexpr std::string_view kSizeTooLong = "chunk size too long";
constexpr std::string_view kPayloadOverflow = "chunked body too large";
constexpr std::string_view kInvalidExtension = "invalid chunk extension";
constexpr std::string_view kLineTooLong = "chunk line too long";
constexpr std::string_view kDataNotCrlf = "chunk data not followed by CRLF";
constexpr std::string_view kTrailerObsFold = "obsolete line folding in trailer";
constexpr std::string_view kTrailerName = "invalid character in trailer field name";
constexpr std::string_view kTrailerNoColon = "trailer field without colon";
constexpr std::string_view kTrailerSpaceBeforeColon = "whitespace between trailer field name and colon";
constexpr std::string_view kTrailerValue = "invalid character in trailer field value";
constexpr std::string_view kTrailerForbidden = "framing field in trailer";
constexpr std::string_view kTrailerTooLarge = "trailer section too large";
}  // namespace reasons

// qdtext (RFC 9110 §5.6.4): HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text.
constexpr bool is_qdtext(char c) { return is_field_value_char(c) && c != '"' && c != '\\'; }

// What a CR/LF/other byte means where a specific byte was required.
constexpr std::string_view unexpected(char c, std::string_view otherwise) {
  if (c == '\n') return reasons::kBareLf;
  return otherwise;
}

}  // namespace

ChunkedFramer::ChunkedFramer(std::size_t max_line, std::size_t max_trailer_bytes)
    : max_line_(max_line), max_trailer_bytes_(max_trailer_bytes) {}

void ChunkedFramer::reset() {
  state_ = State::SizeStart;
  size_digits_ = 0;
  chunk_size_ = 0;
  line_bytes_ = 0;
  trailer_bytes_ = 0;
  payload_bytes_ = 0;
  name_len_ = 0;
  error_reason_ = {};
}

ChunkedFramer::Result ChunkedFramer::feed(std::string_view data) {
  if (state_ == State::Done) return Result{0, true, false, {}};
  if (state_ == State::Failed) return Result{0, false, true, error_reason_};
  const std::size_t n = data.size();
  std::size_t i = 0;
  while (i < n) {
    if (state_ == State::Data) {  // bulk skip: the hot part of a large body
      const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size_, n - i));
      i += take;
      chunk_size_ -= take;
      payload_bytes_ += take;
      if (chunk_size_ == 0) state_ = State::DataCr;
      continue;
    }
    const std::string_view reason = step(data[i]);
    if (!reason.empty()) {
      state_ = State::Failed;
      error_reason_ = reason;
      return Result{i, false, true, reason};
    }
    ++i;
    if (state_ == State::Done) return Result{i, true, false, {}};
  }
  return Result{n, false, false, {}};
}

std::string_view ChunkedFramer::end_of_trailer_name() {
  if (name_len_ <= kNameCapacity && is_framing_field(std::string_view(name_.data(), name_len_)))
    return reasons::kTrailerForbidden;
  return {};
}

std::string_view ChunkedFramer::step(char c) {
  // Length accounting first: chunk-size lines and trailer lines are bounded.
  if (state_ <= State::SizeLf) {
    if (++line_bytes_ > max_line_) return reasons::kLineTooLong;
  } else if (state_ >= State::TrailerLineStart && state_ <= State::FinalLf) {
    if (++line_bytes_ > max_line_) return reasons::kLineTooLong;
    if (++trailer_bytes_ > max_trailer_bytes_) return reasons::kTrailerTooLarge;
  }

  switch (state_) {
    case State::SizeStart: {
      const int v = hex_value(c);
      if (v < 0) return unexpected(c, reasons::kMissingSize);
      chunk_size_ = static_cast<std::uint64_t>(v);
      size_digits_ = 1;
      state_ = State::SizeDigits;
      return {};
    }
    case State::SizeDigits: {
      const int v = hex_value(c);
      if (v >= 0) {
        if (++size_digits_ > kMaxSizeDigits) return reasons::kSizeTooLong;
        chunk_size_ = (chunk_size_ << 4) | static_cast<std::uint64_t>(v);
        return {};
      }
      if (c == '\r') {
        state_ = State::SizeLf;
      } else if (c == ';') {
        state_ = State::ExtBeforeName;
      } else if (is_ows(c)) {
        state_ = State::SizeBws;
      } else {
        return unexpected(c, reasons::kInvalidSize);
      }
      return {};
    }
    case State::SizeBws:
      if (is_ows(c)) return {};
      if (c == ';') {
        state_ = State::ExtBeforeName;
        return {};
      }
      return unexpected(c, reasons::kInvalidExtension);
    case State::ExtBeforeName:
      if (is_ows(c)) return {};
      if (is_tchar(c)) {
        state_ = State::ExtName;
        return {};
      }
      return unexpected(c, reasons::kInvalidExtension);
    case State::ExtName:
      if (is_tchar(c)) return {};
      if (c == '=') {
        state_ = State::ExtBeforeValue;
      } else if (c == ';') {
        state_ = State::ExtBeforeName;
      } else if (is_ows(c)) {
        state_ = State::ExtAfterName;
      } else if (c == '\r') {
        state_ = State::SizeLf;
      } else {
        return unexpected(c, reasons::kInvalidExtension);
      }
      return {};
    case State::ExtAfterName:
      if (is_ows(c)) return {};
      if (c == '=') {
        state_ = State::ExtBeforeValue;
      } else if (c == ';') {
        state_ = State::ExtBeforeName;
      } else {
        return unexpected(c, reasons::kInvalidExtension);
      }
      return {};
    case State::ExtBeforeValue:
      if (is_ows(c)) return {};
      if (is_tchar(c)) {
        state_ = State::ExtTokenValue;
      } else if (c == '"') {
        state_ = State::ExtQuoted;
      } else {
        return unexpected(c, reasons::kInvalidExtension);
      }
      return {};
    case State::ExtTokenValue:
      if (is_tchar(c)) return {};
      if (c == '\r') {
        state_ = State::SizeLf;
      } else if (c == ';') {
        state_ = State::ExtBeforeName;
      } else if (is_ows(c)) {
        state_ = State::SizeBws;
      } else {
        return unexpected(c, reasons::kInvalidExtension);
      }
      return {};
    case State::ExtQuoted:
      if (c == '"') {
        state_ = State::ExtAfterQuoted;
      } else if (c == '\\') {
        state_ = State::ExtQuotedEscape;
      } else if (!is_qdtext(c)) {
        return unexpected(c, reasons::kInvalidExtension);
      }
      return {};
    case State::ExtQuotedEscape:
      if (!is_field_value_char(c)) return unexpected(c, reasons::kInvalidExtension);
      state_ = State::ExtQuoted;
      return {};
    case State::ExtAfterQuoted:
      if (c == '\r') {
        state_ = State::SizeLf;
      } else if (c == ';') {
        state_ = State::ExtBeforeName;
      } else if (is_ows(c)) {
        state_ = State::SizeBws;
      } else {
        return unexpected(c, reasons::kInvalidExtension);
      }
      return {};
    case State::SizeLf:
      if (c != '\n') return reasons::kBareCr;
      line_bytes_ = 0;
      if (chunk_size_ == 0) {
        state_ = State::TrailerLineStart;
        return {};
      }
      if (payload_bytes_ > std::numeric_limits<std::uint64_t>::max() - chunk_size_) return reasons::kPayloadOverflow;
      state_ = State::Data;
      return {};
    case State::DataCr:
      if (c != '\r') return unexpected(c, reasons::kDataNotCrlf);
      state_ = State::DataLf;
      return {};
    case State::DataLf:
      if (c != '\n') return reasons::kBareCr;
      state_ = State::SizeStart;
      line_bytes_ = 0;
      return {};
    case State::TrailerLineStart:
      if (c == '\r') {
        state_ = State::FinalLf;
      } else if (is_ows(c)) {
        return reasons::kTrailerObsFold;
      } else if (is_tchar(c)) {
        name_[0] = to_lower_ascii(c);
        name_len_ = 1;
        state_ = State::TrailerName;
      } else {
        return unexpected(c, reasons::kTrailerName);
      }
      return {};
    case State::TrailerName:
      if (is_tchar(c)) {
        if (name_len_ < kNameCapacity) name_[name_len_] = to_lower_ascii(c);
        if (name_len_ <= kNameCapacity) ++name_len_;  // kNameCapacity + 1 = "longer than anything we match"
        return {};
      }
      if (c == ':') {
        state_ = State::TrailerValue;
        return end_of_trailer_name();
      }
      if (is_ows(c)) return reasons::kTrailerSpaceBeforeColon;
      if (c == '\r') return reasons::kTrailerNoColon;
      return unexpected(c, reasons::kTrailerName);
    case State::TrailerValue:
      if (c == '\r') {
        state_ = State::TrailerLf;
        return {};
      }
      if (!is_field_value_char(c)) return unexpected(c, reasons::kTrailerValue);
      return {};
    case State::TrailerLf:
      if (c != '\n') return reasons::kBareCr;
      line_bytes_ = 0;
      state_ = State::TrailerLineStart;
      return {};
    case State::FinalLf:
      if (c != '\n') return reasons::kBareCr;
      state_ = State::Done;
      return {};
    case State::Data:
    case State::Done:
    case State::Failed:
      break;
  }
  return {};  // unreachable: feed() handles Data, Done and Failed itself
}

}  // namespace drainproxy::http
