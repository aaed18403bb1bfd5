#include "http/message.hpp"

namespace drainproxy::http {

RequestKind RequestHead::kind() const {
  if (is_head_method()) return RequestKind::Head;
  if (is_connect()) return RequestKind::Connect;
  return RequestKind::Regular;
}

void RequestHead::clear() {
  method = {};
  target = {};
  version_minor = 1;
  fields.clear();
  framing = Framing::None;
  content_length = 0;
  keep_alive = false;
  expect_continue = false;
  upgrade_websocket = false;
  upgrade_h2c = false;
  host = {};
  head_size = 0;
}

void ResponseHead::clear() {
  status = 0;
  version_minor = 1;
  reason = {};
  fields.clear();
  framing = Framing::None;
  content_length = 0;
  keep_alive = false;
  upgrade = false;
  head_size = 0;
}

}  // namespace drainproxy::http
