// A mutex that clang's -Wthread-safety checks and ThreadSanitizer sees
// through: std::mutex underneath (TSan intercepts it; Debian's absl::Mutex is
// built without TSan's annotations, so TSan would report races on every
// field it guards), with absl's capability annotations on top (libstdc++'s
// std::mutex has none, so ABSL_GUARDED_BY on one checks nothing).
#ifndef GATI_RUNTIME_MUTEX_H_
#define GATI_RUNTIME_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace gati::runtime {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mutex_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mutex_.unlock(); }

  // Waits on `changed` until `ready()` holds; `ready` runs with the mutex
  // held (write it as a lambda marked ABSL_NO_THREAD_SAFETY_ANALYSIS, since
  // the analysis cannot see that). Whoever makes `ready` true notifies
  // `changed` after changing the state under this mutex.
  template <typename Ready>
  void Await(std::condition_variable& changed, Ready ready) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mutex_, std::adopt_lock);
    changed.wait(lock, ready);
    lock.release();  // Still held; the caller's MutexLock unlocks it.
  }
  // One wait on `changed`, which may end spuriously: for loops that look
  // at their state again after every wake-up. WaitOnceUntil: at most until
  // `deadline`.
  void WaitOnce(std::condition_variable& changed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mutex_, std::adopt_lock);
    changed.wait(lock);
    lock.release();
  }
  template <typename Clock, typename Duration>
  void WaitOnceUntil(std::condition_variable& changed,
                     std::chrono::time_point<Clock, Duration> deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mutex_, std::adopt_lock);
    changed.wait_until(lock, deadline);
    lock.release();
  }
  // The same, for at most `timeout`; returns ready().
  template <typename Ready, typename Rep, typename Period>
  bool AwaitFor(std::condition_variable& changed, std::chrono::duration<Rep, Period> timeout,
                Ready ready) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mutex_, std::adopt_lock);
    const bool result = changed.wait_for(lock, timeout, ready);
    lock.release();
    return result;
  }

 private:
  std::mutex mutex_;
};

// Holds `mutex` for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mutex) ABSL_EXCLUSIVE_LOCK_FUNCTION(mutex) : mutex_(mutex) {
    mutex_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mutex_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mutex_;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_MUTEX_H_
