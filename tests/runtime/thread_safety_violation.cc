// Must NOT compile under clang's -Wthread-safety -Werror=thread-safety:
// `make thread-safety` checks that it fails, which proves the analysis is
// on and that runtime::Mutex carries the annotations it needs.
#include "runtime/mutex.h"

namespace {

class Counter {
 public:
  void IncrementWithoutTheLock() { ++count_; }  // The error the analysis must find.

 private:
  gati::runtime::Mutex mutex_;
  int count_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace

int main() {
  Counter counter;
  counter.IncrementWithoutTheLock();
  return 0;
}
