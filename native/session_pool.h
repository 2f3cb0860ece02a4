// The worker side of the addon: N native threads, each owning one logged-in session with
// one operation in flight; a bounded queue of submitted items; the key handle cache
// (with optional session-object copies of hot keys); and recovery from session, login,
// handle and device failures.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "module.h"
#include "ops.h"

namespace hyokd {

// A group of ops submitted in one call; completes once, when its last item is done.
struct Batch {
  std::vector<Op> ops;
  std::vector<OpResult> results;
  std::atomic<size_t> remaining{0};
  int64_t deadline_ns = 0;  // steady clock; 0 = none
  void* owner = nullptr;    // the addon's completion state
};

enum class PoolState { kReady = 0, kRecovering = 1, kClosing = 2, kClosed = 3 };

struct PoolCounters {
  PoolState state = PoolState::kReady;
  size_t queue_depth = 0, queue_capacity = 0, sessions = 0, busy = 0;
  std::array<uint64_t, kOpKindCount> ops{};
  std::map<std::string, uint64_t> errors;
  uint64_t reinits = 0, session_reopens = 0, relogins = 0, handle_resolves = 0,
           rejected_queue_full = 0, copies_dropped = 0;
};

class SessionPool {
 public:
  struct Options {
    size_t sessions = 2;
    size_t queue_capacity = 4096;
    bool session_copies = false;
    // How often a session copy's token object is checked (still there, same id and class,
    // same usage flags) before the copy is used again; a copy that fails is dropped.
    int64_t copy_recheck_ns = 1'000'000'000;
  };
  // Called on a worker (or the supervisor) thread when a batch is complete.
  using Completion = std::function<void(Batch*)>;

  SessionPool(Module* module, Options opts, Completion done);
  ~SessionPool();

  // Starts the workers and opens their sessions. Blocking; false + err on failure.
  bool Start(OpError* err);
  // Queues every item of the batch, or none: refuses when closed, recovering, or when
  // the items would not fit in the queue.
  bool Submit(Batch* b, OpError* err);
  // Drops a key's cached handles and destroys its session copies.
  void EvictKey(const KeyRef& key);
  PoolCounters Counters();
  PoolState state() const { return state_.load(std::memory_order_acquire); }
  // Waits for queued and in-flight work, then stops the workers and closes sessions.
  void Close();
  // Test hooks: close every session of the slot between two operations, as a token
  // reset would (PKCS#11 leaves closing a session that another thread is using
  // undefined, and SoftHSM2 crashes on it, so the workers are paused around the call);
  // make the next `count` operations fail with `rv` without reaching the module (fault
  // injection).
  CK_RV CloseAllSessions();
  void InjectFault(CK_RV rv, uint64_t count);

 private:
  struct Item {
    Batch* batch;
    uint32_t index;
  };
  struct Worker {
    std::thread thread;
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    uint64_t generation = 0;
  };
  // Usage flags of a key (CK_TRUE, CK_FALSE, or kNoFlag where the module has no such attribute).
  static constexpr size_t kUsageFlags = 7;
  using Usage = std::array<CK_BBOOL, kUsageFlags>;
  struct CachedKey {
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    uint64_t generation = 0;
    // With a copy: the copy's usage flags, and when its token object is next checked
    // (steady clock, ns; shared by every worker that reads the entry).
    Usage usage{};
    std::shared_ptr<std::atomic<int64_t>> check_due;
  };
  class Context;

  void WorkerLoop(size_t index);
  void SupervisorLoop();
  void RunItem(Worker& w, Item item);
  void FinishItem(Batch* b);
  CK_RV EnsureSession(Worker& w);
  Recovery SessionHealth(Worker& w);
  bool Resolve(Worker& w, const KeyRef& key, bool hot, CK_OBJECT_HANDLE* out, OpError* err);
  bool ReadUsage(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE h, Usage* out);
  bool CopyStillValid(Worker& w, const KeyRef& key, const CachedKey& entry);
  void DropCopy(const std::string& ck, const CachedKey& entry);
  void DestroyCopy(CK_OBJECT_HANDLE copy, uint64_t generation);
  void RequestReinit();
  void CountError(const std::string& code);
  bool TakeFault(CK_RV* rv);
  bool NeedsWorkerLocked() const;

  Module* module_;
  Options opts_;
  Completion done_;
  std::vector<Worker> workers_;
  std::thread supervisor_;

  std::mutex mu_;
  std::condition_variable work_cv_;   // workers wait for items or a state change
  std::condition_variable idle_cv_;   // close/supervisor wait for busy_ == 0
  std::condition_variable super_cv_;  // supervisor waits for a reinit request
  std::deque<Item> queue_;
  size_t busy_ = 0;
  size_t waiting_ = 0;  // workers blocked on work_cv_
  bool stop_ = false;
  bool closing_ = false;  // no new submissions; queued work still drains
  bool paused_ = false;   // workers take no new item (test hook)
  bool reinit_requested_ = false;
  std::atomic<PoolState> state_{PoolState::kReady};

  std::shared_mutex cache_mu_;
  std::unordered_map<std::string, CachedKey> cache_;

  std::array<std::atomic<uint64_t>, kOpKindCount> op_counts_{};
  std::mutex err_mu_;
  std::map<std::string, uint64_t> err_counts_;
  std::atomic<uint64_t> reinits_{0}, reopens_{0}, resolves_{0}, rejected_full_{0},
      copies_dropped_{0};
  std::atomic<uint64_t> fault_count_{0};
  std::atomic<CK_RV> fault_rv_{CKR_OK};
};

}  // namespace hyokd
