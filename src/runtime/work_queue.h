// A fixed pool of threads running submitted tasks in FIFO order.
#ifndef GATI_RUNTIME_WORK_QUEUE_H_
#define GATI_RUNTIME_WORK_QUEUE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "runtime/mutex.h"

namespace gati::runtime {

class WorkQueue {
 public:
  // Starts `threads` (>= 1) threads.
  explicit WorkQueue(int threads);
  // Runs every task already submitted, then joins the threads.
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task`; thread-safe. Tasks must not throw.
  void Submit(std::function<void()> task);

 private:
  void Loop();

  Mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_WORK_QUEUE_H_
