#pragma once
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <utility>

namespace drainproxy::proxy {

// Coroutine frames of the data path come from per-thread free lists, one per size
// class: a frame has the same size every time its function runs, so after warm-up
// a request allocates no frame from malloc.
void* frame_allocate(std::size_t size);
void frame_deallocate(void* p, std::size_t size) noexcept;
// Frees most of this thread's cached frames (after a burst); returns the bytes freed.
std::size_t frame_trim();

// Resumes `h` and then, one after another, the awaiters of the tasks that finish
// on the way. Every resumption from outside a coroutine (I/O completions, joins)
// goes through here, so a finished task's frame is only destroyed after its own
// resume call has returned: no reliance on the compiler turning symmetric transfer
// into a tail call, which sanitizer and -O0 builds do not.
void resume(std::coroutine_handle<> h);

namespace detail {
// Set by a finishing task for resume() to run next.
void set_next_resume(std::coroutine_handle<> h) noexcept;
}  // namespace detail

struct FrameAllocated {
  static void* operator new(std::size_t size) { return frame_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { frame_deallocate(p, size); }
};

template <typename T>
class Task;

namespace detail {

struct TaskPromiseBase : FrameAllocated {
  std::coroutine_handle<> continuation;
  std::exception_ptr error;
  bool running_inline = false;  // started from the awaiter's await_suspend, which is still on the stack
  bool done = false;

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename P>
    void await_suspend(std::coroutine_handle<P> h) noexcept {
      auto& p = h.promise();
      p.done = true;
      // Finished without ever suspending: the awaiter's await_suspend returns false
      // and its coroutine simply goes on, so a loop of such awaits never nests.
      if (p.running_inline) return;
      // Finished later, from an event: resume() runs the awaiter once this frame's
      // resume call has returned.
      set_next_resume(p.continuation);
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

// Starts `h` on the current stack; true when the awaiter must suspend (the task
// suspended and will resume it), false when the task already finished.
template <typename P>
bool start_inline(std::coroutine_handle<P> h, std::coroutine_handle<> awaiting) {
  auto& p = h.promise();
  p.continuation = awaiting;
  p.running_inline = true;
  h.resume();
  p.running_inline = false;
  return !p.done;
}

}  // namespace detail

namespace detail {

// How a task hands over its result: a value, or nothing for Task<void>.
template <typename T>
struct ResultPromise : TaskPromiseBase {
  std::optional<T> value;
  template <typename U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() { return std::move(*value); }
};

template <>
struct ResultPromise<void> : TaskPromiseBase {
  void return_void() noexcept {}
  void take() noexcept {}
};

}  // namespace detail

// A lazily started coroutine that resumes its awaiter when it finishes. Tasks run
// on one worker thread and are driven by the Poller's readiness events; they are
// much lighter than asio::awaitable (no executor, no per-operation allocation).
template <typename T>
class [[nodiscard]] Task {
 public:
  struct promise_type : detail::ResultPromise<T> {
    Task get_return_object() { return Task(std::coroutine_handle<promise_type>::from_promise(*this)); }
  };

  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> awaiting) { return detail::start_inline(h_, awaiting); }
  T await_resume() {
    if (h_.promise().error) std::rethrow_exception(h_.promise().error);
    return h_.promise().take();
  }

 private:
  explicit Task(std::coroutine_handle<promise_type> h) : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

namespace detail {

// The root of a detached task: starts at once and frees itself at the end.
struct Detached {
  struct promise_type : FrameAllocated {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

template <typename Done>
Detached run_detached(Task<void> task, Done done) {
  std::exception_ptr error;
  try {
    co_await std::move(task);
  } catch (...) {
    error = std::current_exception();
  }
  done(error);
}

}  // namespace detail

// Runs `task` to completion on the calling thread (until its first suspension now,
// the rest from readiness events), then calls done(exception_ptr).
template <typename Done>
void spawn(Task<void> task, Done done) {
  detail::run_detached(std::move(task), std::move(done));
}

}  // namespace drainproxy::proxy
