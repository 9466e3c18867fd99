// Joining in rounds (distributed/rendezvous.h): ranks as threads on one in-memory c10d store. A round counts
// only when it succeeded on every rank; all ranks retry together and agree on the round that worked.
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "common/errors.h"
#include "distributed/rendezvous.h"

namespace vitprobe {
namespace {

constexpr std::chrono::milliseconds kWait(20000);

// Runs body(rank) on `world` threads; returns each rank's result or -1 with its error text.
std::vector<int> on_ranks(int world, const std::function<int(int)>& body, std::vector<std::string>* errors = nullptr) {
  std::vector<int> results(world, -1);
  std::vector<std::string> texts(world);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        results[rank] = body(rank);
      } catch (const std::exception& error) {
        texts[rank] = error.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  if (errors) *errors = texts;
  return results;
}

// Inside an attempt: returns once every rank has begun the round, so a failure published after it cannot make
// a slower thread skip the round (as a late rank would).
void all_began(c10d::Store& store, int round, int world) {
  const std::string key = "test/began-" + std::to_string(round);
  if (store.add(key, 1) == world) store.set(key + "-all", std::string("1"));
  store.wait({key + "-all"}, kWait);
}

TEST(Rendezvous, AllRanksSucceedingInTheFirstRoundStopThere) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::atomic<int> calls{0};
  const auto rounds = on_ranks(3, [&](int rank) {
    wait_for_all_ranks(*store, 3, kWait);
    return attempt_together(*store, rank, 3, 3, kWait, [&](int) { ++calls; });
  });
  EXPECT_EQ(rounds, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(calls.load(), 3);
}

TEST(Rendezvous, OneRankFailingMakesEveryRankRetry) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::atomic<int>> calls(3);
  const auto rounds = on_ranks(3, [&](int rank) {
    wait_for_all_ranks(*store, 3, kWait);
    return attempt_together(*store, rank, 3, 3, kWait, [&, rank](int round) {
      ++calls[rank];
      all_began(*store, round, 3);
      if (rank == 2 && round == 0) throw std::runtime_error("connect timed out");
    });
  });
  EXPECT_EQ(rounds, (std::vector<int>{1, 1, 1}));  // the ranks that succeeded in round 0 tried again too
  for (auto& count : calls) EXPECT_EQ(count.load(), 2);
}

TEST(Rendezvous, ALateRankSkipsARoundItsPeersAlreadyGaveUp) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::vector<int>> attempted(2);
  const auto rounds = on_ranks(2, [&](int rank) {
    wait_for_all_ranks(*store, 2, kWait);
    if (rank == 1) {  // comes after rank 0 has failed round 0
      while (!store->check({"vitprobe/round-0/rank-0"})) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return attempt_together(*store, rank, 2, 3, kWait, [&, rank](int round) {
      attempted[rank].push_back(round);
      if (rank == 0 && round == 0) throw std::runtime_error("peer did not come");
    });
  });
  EXPECT_EQ(rounds, (std::vector<int>{1, 1}));
  EXPECT_EQ(attempted[0], (std::vector<int>{0, 1}));
  EXPECT_EQ(attempted[1], (std::vector<int>{1}));  // round 0 skipped, not attempted
}

TEST(Rendezvous, GivesUpAfterTheLastRoundWithTheReason) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::string> errors;
  const auto rounds = on_ranks(2, [&](int rank) {
    wait_for_all_ranks(*store, 2, kWait);
    return attempt_together(*store, rank, 2, 2, kWait, [&, rank](int round) {
      all_began(*store, round, 2);
      if (rank == 1) throw std::runtime_error("peer never connected");
    });
  }, &errors);
  EXPECT_EQ(rounds, (std::vector<int>{-1, -1}));
  EXPECT_NE(errors[0].find("2 attempt(s) to connect failed (last on rank(s) 1)"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("peer never connected"), std::string::npos) << errors[1];
}

TEST(Rendezvous, WaitsForALateRankAndTimesOutWithoutOne) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  const auto arrived = on_ranks(2, [&](int rank) {
    if (rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    wait_for_all_ranks(*store, 2, kWait);
    return rank;
  });
  EXPECT_EQ(arrived, (std::vector<int>{0, 1}));
  auto alone = c10::make_intrusive<c10d::HashStore>();
  EXPECT_ANY_THROW(wait_for_all_ranks(*alone, 2, std::chrono::milliseconds(200)));
}

}  // namespace
}  // namespace vitprobe
