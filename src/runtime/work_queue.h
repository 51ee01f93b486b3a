// A fixed pool of threads running submitted tasks in FIFO order.
//
// A task is a function pointer with two arguments, so that submitting one
// allocates nothing (the queue is a ring that only grows). An idle thread
// spins for `spin_us` (yielding its core to anything runnable) before it
// sleeps, so that a task submitted soon after the last one starts without a
// wake-up through the kernel. Only one idle thread spins at a time; the
// others sleep, and submitting wakes one only for a task that the spinner
// will not take.
#ifndef GATI_RUNTIME_WORK_QUEUE_H_
#define GATI_RUNTIME_WORK_QUEUE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "runtime/mutex.h"

namespace gati::runtime {

class WorkQueue {
 public:
  struct Task {
    void (*run)(void* object, int64_t arg) = nullptr;
    void* object = nullptr;
    int64_t arg = 0;
  };

  // Starts `threads` (>= 1) threads; `spin_us` >= 0.
  explicit WorkQueue(int threads, double spin_us = 0);
  // Runs every task already submitted, then joins the threads.
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task`; thread-safe. Tasks must not throw. No allocation once
  // the ring has grown to the most tasks ever queued at once.
  void Submit(Task task);
  // The same for a closure (allocates; for paths off the request's).
  void Submit(std::function<void()> task);

 private:
  void Loop();
  // Spins until a task may be queued or `spin_us_` passed.
  void Spin() const;

  const double spin_us_;
  Mutex mutex_;
  std::condition_variable wake_;
  std::vector<Task> ring_ ABSL_GUARDED_BY(mutex_);
  size_t head_ ABSL_GUARDED_BY(mutex_) = 0;
  size_t count_ ABSL_GUARDED_BY(mutex_) = 0;
  int sleepers_ ABSL_GUARDED_BY(mutex_) = 0;
  int spinners_ ABSL_GUARDED_BY(mutex_) = 0;  // At most one.
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::atomic<int64_t> queued_{0};  // count_, readable without the lock.
  std::vector<std::thread> threads_;
};

// Spins (yielding the core) until `done()` or `spin_us` passed; returns
// done(). For a waiter that would otherwise sleep on a condition variable
// and pay a kernel wake-up.
template <typename Done>
bool SpinUntil(double spin_us, Done done) {
  if (done()) return true;
  if (spin_us <= 0) return false;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::nanoseconds(static_cast<int64_t>(spin_us * 1000));
  do {
    std::this_thread::yield();
    if (done()) return true;
  } while (std::chrono::steady_clock::now() < deadline);
  return done();
}

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_WORK_QUEUE_H_
