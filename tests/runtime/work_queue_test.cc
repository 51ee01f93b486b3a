// The work queue: function-pointer tasks in FIFO order past the ring's
// first size, closures, draining on destruction, threads that spin and
// then sleep still waking for new work, and sleepers woken for the tasks
// that the one spinning thread does not take. Also runs under ThreadSanitizer.
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

// One idle thread spins and the others sleep; tasks beyond the spinner must
// still wake sleepers. Three tasks that each wait for all three to start
// finish only if the three threads run them at once.
TEST(WorkQueueTest, TasksBeyondTheSpinnerWakeSleepers) {
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  std::atomic<int> met{0};
  runtime::WorkQueue queue(3, /*spin_us=*/200000);
  // Let the threads settle: one spinning, two asleep.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (int i = 0; i < 3; ++i) {
    queue.Submit([&] {
      ++started;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (started.load() < 3 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      if (started.load() == 3) ++met;
      ++finished;
    });
  }
  // Before the destructor, whose drain would run the tasks anyway.
  for (int i = 0; i < 3000 && finished.load() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(met.load(), 3);
}

}  // namespace
}  // namespace gati
