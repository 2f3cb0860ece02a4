// What every native helper thread of the addon (HSM workers, the pool's supervisor, the
// audit write thread) does first: name itself, and step back for the event loop.
//
// The name: Linux thread names are at most 15 bytes (longer ones are cut here); they show
// in `top -H`, `ps -L`, perf and /proc/<pid>/task/*/comm, so an operator can tell the HSM
// workers and the audit writer from the event loop.
//
// SCHED_BATCH: on the data plane the event loop is the daemon's bottleneck, and every
// submit and every audit hand-over wakes a helper thread. Under the default policy a woken
// thread may take the CPU from the running one, so on a small machine the loop was often
// stopped by the very worker it had just woken. A SCHED_BATCH thread is not preferred at
// wake-up; its share of CPU time is otherwise the same (nice 0), and any user may choose
// the policy for its own threads. Measured here (bench/RESULTS.md, fourteenth pass):
// unary Unwrap with audit on, 12.0k -> 13.1k calls/s in alternating windows, and less
// event-loop CPU per call. Where the policy is missing or refused, the thread runs as before.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <string>

namespace hyokd {

// The policy first: once the name shows, the policy is in place (the thread test relies on it).
inline void StartHelperThread(const std::string& name) {
#ifdef SCHED_BATCH
  sched_param param{};
  param.sched_priority = 0;
  pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
#endif
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace hyokd
