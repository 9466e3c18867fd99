#include "distributed/rendezvous.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <string>
#include <vector>

#include "common/errors.h"

namespace vitprobe {

namespace {

const char* const kArrived = "vitprobe/arrived";
const char* const kAllArrived = "vitprobe/all-arrived";

std::string outcome_key(int round, int rank) {
  return "vitprobe/round-" + std::to_string(round) + "/rank-" + std::to_string(rank);
}

bool peer_failed(c10d::Store& store, int round, int rank, int world_size) {
  for (int other = 0; other < world_size; ++other) {
    if (other == rank || !store.check({outcome_key(round, other)})) continue;
    const auto value = store.get(outcome_key(round, other));
    if (std::string(value.begin(), value.end()) != "ok") return true;
  }
  return false;
}

std::string first_line(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : error.what();
  return text.substr(0, text.find('\n'));
}

}  // namespace

void wait_for_all_ranks(c10d::Store& store, int world_size, std::chrono::milliseconds wait) {
  // The rank that completes the count says so; the others wait for that key (a counter cannot be waited on).
  if (store.add(kArrived, 1) == world_size) store.set(kAllArrived, std::string("1"));
  store.wait({kAllArrived}, wait);
}

int attempt_together(c10d::Store& store, int rank, int world_size, int rounds, std::chrono::milliseconds wait,
                     const std::function<void(int round)>& attempt) {
  std::string own_error;
  std::vector<int> failed;
  for (int round = 0; round < rounds; ++round) {
    bool ok = true;
    if (peer_failed(store, round, rank, world_size)) {
      // A late rank need not connect to peers that have already given this round up (it would wait for them).
      ok = false;
      own_error = "a peer gave round " + std::to_string(round + 1) + " up before this rank began it";
    } else {
      try {
        attempt(round);
      } catch (const std::exception& error) {
        ok = false;
        own_error = first_line(error);
      }
    }
    store.set(outcome_key(round, rank), std::string(ok ? "ok" : "failed"));
    std::vector<std::string> keys;
    for (int other = 0; other < world_size; ++other) keys.push_back(outcome_key(round, other));
    store.wait(keys, wait);
    failed.clear();
    for (int other = 0; other < world_size; ++other) {
      const auto value = store.get(keys[other]);
      if (std::string(value.begin(), value.end()) != "ok") failed.push_back(other);
    }
    if (failed.empty()) return round;
  }
  std::string ranks;
  for (int other : failed) ranks += (ranks.empty() ? "" : ", ") + std::to_string(other);
  throw IoError(std::to_string(rounds) + " attempt(s) to connect failed (last on rank(s) " + ranks + ")" +
                (own_error.empty() ? std::string() : ": " + own_error));
}

}  // namespace vitprobe
