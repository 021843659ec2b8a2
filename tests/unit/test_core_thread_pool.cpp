// ThreadPool::parallel_for: every index exactly once, contiguous chunks in a fixed split, callables
// of any size (borrowed, not copied), and reuse across many calls.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

using tern::ThreadPool;

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      int64_t a1 = 1, a2 = 2, a3 = 3, a4 = 4, a5 = 5;  // a closure larger than std::function's buffer
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        ASSERT_LE(0, b);
        ASSERT_LE(b, e);
        ASSERT_LE(e, n);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)] += static_cast<int>(a1 + a2 + a3 + a4 + a5 - 14);
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n << " " << i;
    }
  }
}

TEST(ThreadPool, SplitIsTheSameEveryTime) {
  ThreadPool pool(3);
  auto split = [&] {
    std::atomic<int> k{0};
    std::vector<std::pair<int64_t, int64_t>> ranges(3, {-1, -1});
    pool.parallel_for(100, [&](int64_t b, int64_t e) { ranges[static_cast<size_t>(k++)] = {b, e}; });
    std::sort(ranges.begin(), ranges.end());
    return ranges;
  };
  const auto first = split();
  EXPECT_EQ(first, (std::vector<std::pair<int64_t, int64_t>>{{0, 34}, {34, 67}, {67, 100}}));
  for (int i = 0; i < 200; ++i) EXPECT_EQ(split(), first);
}

TEST(ThreadPool, GrainKeepsUnitsWhole) {
  ThreadPool pool(3);
  for (int64_t n : {1, 4, 5, 17, 64, 100}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for_grain(n, 4, [&](int64_t b, int64_t e) {
      EXPECT_EQ(b % 4, 0) << n;
      EXPECT_TRUE(e % 4 == 0 || e == n) << n;
      for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << n << " " << i;
  }
}

// Many back-to-back small jobs with pauses long enough for workers to fall asleep between some of
// them: no job may be lost or run twice whichever way a worker is woken.
TEST(ThreadPool, SurvivesSpinAndSleepTransitions) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int i = 0; i < 2000; ++i) {
    pool.parallel_for(2, [&](int64_t b, int64_t e) { total += e - b; });
    if (i % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(total.load(), 4000);
}

TEST(ThreadPool, DynamicRunsEveryItemOnce) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 3, 100}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for_dynamic(n, [&](int64_t b, int64_t e) {
        EXPECT_EQ(e, b + 1);
        ++hits[static_cast<size_t>(b)];
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1);
    }
  }
}

// parallel_for_stealing: every item exactly once in whole pieces, whichever thread runs them. One
// thread made slow (it sleeps in its first piece) must leave its remaining pieces to the others,
// and the pieces must go on being handed out correctly call after call.
TEST(ThreadPool, StealingRunsEveryPieceOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 5, 8, 9, 64, 1001}) {
      for (int64_t grain : {1, 4, 16}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for_stealing(n, grain, [&](int64_t b, int64_t e) {
          EXPECT_EQ(b % grain, 0);
          const bool whole = b == 0 && e == n && (threads == 1 || n <= grain);  // one call, no split
          EXPECT_TRUE(e == std::min(n, b + grain) || whole) << b << " " << e;
          for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
        });
        for (int64_t i = 0; i < n; ++i)
          EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n << " " << grain << " " << i;
      }
    }
  }
}

TEST(ThreadPool, StealingMovesPiecesAwayFromASlowThread) {
  ThreadPool pool(2);
  const auto caller = std::this_thread::get_id();
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> by_caller{0}, by_worker{0};
    pool.parallel_for_stealing(40, 1, [&](int64_t b, int64_t) {
      const bool mine = std::this_thread::get_id() == caller;
      // The caller's first piece takes long enough for the worker to finish its own 20 and take
      // most of the caller's.
      if (mine && b == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ++(mine ? by_caller : by_worker);
    });
    EXPECT_EQ(by_caller + by_worker, 40);
    EXPECT_GT(by_worker.load(), 30) << "round " << round;
  }
}
