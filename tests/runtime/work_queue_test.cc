// The work queue: function-pointer tasks in FIFO order past the ring's
// first size, closures, draining on destruction, and threads that spin
// and then sleep still waking for new work. Also runs under ThreadSanitizer.
#include "runtime/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace gati {
namespace {

TEST(WorkQueueTest, RunsFunctionPointerTasksInOrderPastTheRingsFirstSize) {
  std::vector<int> order;
  {
    runtime::WorkQueue queue(1, /*spin_us=*/0);
    // Hold the only thread so that 100 tasks queue at once and the ring grows.
    std::atomic<bool> release{false};
    queue.Submit([&] {
      while (!release.load()) std::this_thread::yield();
    });
    for (int i = 0; i < 100; ++i) {
      queue.Submit(runtime::WorkQueue::Task{
          [](void* object, int64_t arg) {
            static_cast<std::vector<int>*>(object)->push_back(static_cast<int>(arg));
          },
          &order, i});
    }
    release = true;
  }  // The destructor runs what is queued.
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(WorkQueueTest, SpinningThreadsStillSleepAndWake) {
  std::atomic<int> ran{0};
  runtime::WorkQueue queue(2, /*spin_us=*/50);
  for (int round = 0; round < 5; ++round) {
    // Past the spin: the threads sleep, and a submit must wake one.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    queue.Submit([&] { ++ran; });
  }
  for (int i = 0; i < 2000 && ran.load() < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(ran.load(), 5);
}

}  // namespace
}  // namespace gati
