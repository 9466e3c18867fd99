#include "distributed/rendezvous.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "common/errors.h"

namespace vitprobe {

namespace {

const char* const kArrived = "vitprobe/arrived";
const char* const kAllArrived = "vitprobe/all-arrived";
const char* const kGaveUp = "vitprobe/gave-up";
const char* const kAllGaveUp = "vitprobe/all-gave-up";
// Outcomes of a round: a rank that skipped it caused nothing, but the round still failed.
const char* const kOk = "ok";
const char* const kFailed = "failed";
const char* const kSkipped = "skipped";

std::string outcome_key(int round, int rank) {
  return "vitprobe/round-" + std::to_string(round) + "/rank-" + std::to_string(rank);
}

std::string read(c10d::Store& store, const std::string& key) {
  const auto value = store.get(key);
  return std::string(value.begin(), value.end());
}

bool peer_gave_up(c10d::Store& store, int round, int rank, int world_size) {
  for (int other = 0; other < world_size; ++other) {
    if (other != rank && store.check({outcome_key(round, other)}) && read(store, outcome_key(round, other)) != kOk) {
      return true;
    }
  }
  return false;
}

// Counts this rank out of a failed join. Rank 0 hosts the store: it waits (briefly) until every rank has read
// the last round's outcomes, so the others report the agreed failure rather than a lost connection.
void leave_together(c10d::Store& store, int rank, int world_size, std::chrono::milliseconds wait) {
  try {
    if (store.add(kGaveUp, 1) == world_size) store.set(kAllGaveUp, std::string("1"));
    if (rank == 0) store.wait({kAllGaveUp}, std::min(wait, std::chrono::milliseconds(30000)));
  } catch (const std::exception&) {
    // a rank that died meanwhile: the failure below is reported all the same
  }
}

}  // namespace

std::string first_line(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : error.what();
  return text.substr(0, text.find('\n'));
}

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
    own_error.clear();
    const char* outcome = kOk;
    if (peer_gave_up(store, round, rank, world_size)) {
      // A late rank need not connect to peers that have already given this round up (it would wait for them).
      outcome = kSkipped;
    } else {
      try {
        attempt(round);
      } catch (const std::exception& error) {
        outcome = kFailed;
        own_error = first_line(error);
      }
    }
    store.set(outcome_key(round, rank), std::string(outcome));
    std::vector<std::string> keys;
    for (int other = 0; other < world_size; ++other) keys.push_back(outcome_key(round, other));
    store.wait(keys, wait);
    failed.clear();
    bool all_ok = true;
    for (int other = 0; other < world_size; ++other) {
      const std::string value = read(store, keys[other]);
      all_ok = all_ok && value == kOk;
      if (value == kFailed) failed.push_back(other);
    }
    if (all_ok) return round;
  }
  leave_together(store, rank, world_size, wait);
  std::string ranks;
  for (int other : failed) ranks += (ranks.empty() ? "" : ", ") + std::to_string(other);
  throw IoError(std::to_string(rounds) + " attempt(s) to connect failed (last on rank(s) " + ranks + ")" +
                (own_error.empty() ? std::string() : ": " + own_error));
}

}  // namespace vitprobe
