#pragma once
#include <boost/intrusive/list.hpp>

namespace drainproxy::proxy {

using SessionHook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// A proxied connection as its listener sees it. Sessions live on one worker
// thread, so the registry needs no lock.
class Session : public SessionHook {
 public:
  virtual ~Session() = default;
  // The drain deadline passed: close now and count the connection as drain_forced.
  virtual void force_close() = 0;
};

using SessionList = boost::intrusive::list<Session, boost::intrusive::constant_time_size<false>>;

}  // namespace drainproxy::proxy
