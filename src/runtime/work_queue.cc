#include "runtime/work_queue.h"

#include <memory>

namespace gati::runtime {

WorkQueue::WorkQueue(int threads, double spin_us) : spin_us_(spin_us) {
  {
    MutexLock lock(&mutex_);
    ring_.resize(16);
  }
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

WorkQueue::~WorkQueue() {
  {
    MutexLock lock(&mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void WorkQueue::Submit(Task task) {
  bool wake = false;
  {
    MutexLock lock(&mutex_);
    if (count_ == ring_.size()) {
      // Grow: unroll the ring into a vector twice the size.
      std::vector<Task> grown(ring_.size() * 2);
      for (size_t i = 0; i < count_; ++i) grown[i] = ring_[(head_ + i) % ring_.size()];
      ring_ = std::move(grown);
      head_ = 0;
    }
    ring_[(head_ + count_) % ring_.size()] = task;
    ++count_;
    queued_.store(static_cast<int64_t>(count_), std::memory_order_release);
    // A spinning thread takes a task without a wake-up through the kernel;
    // a sleeper is woken only for tasks beyond the spinners.
    wake = sleepers_ > 0 && count_ > static_cast<size_t>(spinners_);
  }
  if (wake) wake_.notify_one();
}

void WorkQueue::Submit(std::function<void()> task) {
  auto* owned = new std::function<void()>(std::move(task));
  Submit(Task{[](void* object, int64_t) {
                std::unique_ptr<std::function<void()>> run(
                    static_cast<std::function<void()>*>(object));
                (*run)();
              },
              owned, 0});
}

void WorkQueue::Spin() const {
  SpinUntil(spin_us_, [this] { return queued_.load(std::memory_order_acquire) > 0; });
}

void WorkQueue::Loop() {
  bool spun = false;  // This thread's last wait was a spin that found nothing.
  for (;;) {
    Task task;
    {
      MutexLock lock(&mutex_);
      while (count_ == 0 && !stopping_) {
        if (!spun && spinners_ == 0 && spin_us_ > 0) {
          // One idle thread spins; the others sleep. Idle spinners beyond
          // one only take cores from the threads doing the work (on 2
          // cores, a second spinning worker tripled a handoff's cost).
          ++spinners_;
          mutex_.Unlock();
          Spin();
          mutex_.Lock();
          --spinners_;
          spun = true;
          continue;
        }
        ++sleepers_;
        mutex_.Await(wake_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return stopping_ || count_ > 0;
        });
        --sleepers_;
        spun = false;
      }
      if (count_ == 0) return;  // Stopping and drained.
      task = ring_[head_];
      head_ = (head_ + 1) % ring_.size();
      --count_;
      queued_.store(static_cast<int64_t>(count_), std::memory_order_release);
      // Tasks left that no spinner will take: wake a sleeper for them.
      if (count_ > static_cast<size_t>(spinners_) && sleepers_ > 0) wake_.notify_one();
    }
    spun = false;
    task.run(task.object, task.arg);
  }
}
}  // namespace gati::runtime
