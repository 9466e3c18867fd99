#pragma once
// Joining a run in rounds: every rank first checks in at the store (slow starters are waited for with the whole
// --dist-timeout), then the connection itself is tried with a short limit; all ranks agree through the store on
// whether a round succeeded everywhere, so they retry together on fresh keys instead of one rank hanging in a
// connect that will never complete.
#include <chrono>
#include <exception>
#include <functional>
#include <string>

namespace c10d {
class Store;
}

namespace vitprobe {

/// The first line of an error's text (a c10::Error without its C++ backtrace).
std::string first_line(const std::exception& error);

/// Blocks until all `world_size` ranks have called it on `store`, at most `wait` (then c10d's timeout error).
void wait_for_all_ranks(c10d::Store& store, int world_size, std::chrono::milliseconds wait);

/// Calls attempt(round) for round = 0, 1, ... until a round in which the attempt returned without throwing on
/// every rank; returns that round. A rank that finds a peer's failure of the round already published skips it.
/// Each rank publishes its outcome under a key of its own per round and reads everyone's (waiting at most
/// `wait`), so all ranks decide alike. After `rounds` failed rounds throws IoError with this rank's last error,
/// or the ranks that failed when this one did not.
int attempt_together(c10d::Store& store, int rank, int world_size, int rounds, std::chrono::milliseconds wait,
                     const std::function<void(int round)>& attempt);

}  // namespace vitprobe
