// Names the calling native thread. Linux thread names are at most 15 bytes (longer ones
// are cut here); they show in `top -H`, `ps -L`, perf and /proc/<pid>/task/*/comm, so an
// operator can tell the HSM workers and the audit writer from the event loop.
#pragma once

#include <pthread.h>

#include <string>

namespace hyokd {

inline void NameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace hyokd
