#pragma once
#include <boost/intrusive/list.hpp>
#include <chrono>

#include "proxy/stats.hpp"

namespace drainproxy::proxy {

using AutoUnlinkHook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
using IdleHook = boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// A proxied connection as its listener sees it. Sessions live on one worker
// thread, so the registry needs no lock.
class Session : public AutoUnlinkHook {
 public:
  virtual ~Session() = default;
  // The drain deadline passed: close now and count the connection as drain_forced.
  virtual void force_close() = 0;
};

using SessionList = boost::intrusive::list<Session, boost::intrusive::constant_time_size<false>>;

// An HTTP connection as the listener's sweeps see it. While it waits for its next
// request it sits in the idle list, in the order connections went idle, so idle
// timeouts and drain closes walk from the front. While it works on a request it
// sits in the busy list, whose deadlines the sweep checks: no per-request timer.
class IdleConnection {
 public:
  virtual ~IdleConnection() = default;
  virtual void close_idle(CloseReason why) = 0;
  virtual void check_deadline(std::chrono::steady_clock::time_point now) = 0;

  IdleHook idle_hook;  // in the idle list or the busy list, never both
  std::chrono::steady_clock::time_point idle_since;
};

using IdleList = boost::intrusive::list<IdleConnection,
                                        boost::intrusive::member_hook<IdleConnection, IdleHook, &IdleConnection::idle_hook>,
                                        boost::intrusive::constant_time_size<false>>;

}  // namespace drainproxy::proxy
