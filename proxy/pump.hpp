#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "proxy/asio.hpp"
#include "proxy/poller.hpp"
#include "proxy/task.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/pipe_pool.hpp"
#include "proxy/stats.hpp"

namespace drainproxy::proxy {

// Bytes asked of one splice(2) into a pipe (a default pipe holds 64 KiB).
constexpr std::size_t kSpliceChunk = 64 * 1024;
// Bytes one relay may move without a pause before letting the worker's other
// connections run.
constexpr std::size_t kFairShare = 1024 * 1024;

enum class PumpEnd : std::uint8_t {
  SourceEof,    // the source half-closed (the caller passes it on, or closes both)
  SourceError,  // reading failed (reset, or the socket was closed under us)
  SinkError,    // writing failed
};

// Copies bytes from one socket to another until EOF or an error. Shared by TCP
// sessions and HTTP upgrade tunnels. A buffer is borrowed from `pool` only while
// data is moving: reads are tried without blocking, and an empty socket is waited
// on without a buffer. The sockets, pool, counters and activity stamp belong to the
// caller, which outlives this coroutine. With `pipes`, bulk flows (a read that
// fills the buffer) move by splice(2) through a borrowed pipe, never through user
// space; small messages are copied, which costs fewer syscalls. After 1 MiB without
// a pause the pump yields, so one fast stream cannot starve the worker.
Task<PumpEnd> pump_bytes(Socket& from, Socket& to, BufferPool& pool, PipePool* pipes, Counter* read_bytes,
                         Counter* written_bytes, std::chrono::steady_clock::time_point& last_activity,
                         error_code& ec);

inline bool is_peer_gone(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
}

}  // namespace drainproxy::proxy
