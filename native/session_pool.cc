#include "session_pool.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "helper_thread.h"

namespace hyokd {

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// What an op sees of the worker that runs it.
class SessionPool::Context : public OpContext {
 public:
  Context(SessionPool* pool, Worker* w) : pool_(pool), w_(w) {}
  CK_FUNCTION_LIST* fl() override { return pool_->module_->fl(); }
  CK_SESSION_HANDLE session() override { return w_->session; }
  bool Resolve(const KeyRef& key, bool hot, CK_OBJECT_HANDLE* out, OpError* err) override {
    return pool_->Resolve(*w_, key, hot, out, err);
  }
  bool HasMechanism(CK_MECHANISM_TYPE m) override { return pool_->module_->HasMechanism(m); }

 private:
  SessionPool* pool_;
  Worker* w_;
};

SessionPool::SessionPool(Module* module, Options opts, Completion done)
    : module_(module), opts_(opts), done_(std::move(done)) {
  if (opts_.sessions == 0) opts_.sessions = 1;
  if (opts_.queue_capacity == 0) opts_.queue_capacity = 1;
}

SessionPool::~SessionPool() { Close(); }

bool SessionPool::Start(OpError* err) {
  workers_.resize(opts_.sessions);
  for (Worker& w : workers_) {
    CK_RV rv = module_->OpenSession(&w.session);
    if (rv != CKR_OK) {
      *err = OpError::FromRv(rv, "C_OpenSession");
      for (Worker& o : workers_) {
        if (o.session != CK_INVALID_HANDLE) module_->fl()->C_CloseSession(o.session);
        o.session = CK_INVALID_HANDLE;
      }
      workers_.clear();
      state_.store(PoolState::kClosed);
      return false;
    }
    w.generation = module_->generation();
  }
  for (size_t i = 0; i < workers_.size(); i++) {
    workers_[i].thread = std::thread([this, i] { WorkerLoop(i); });
  }
  supervisor_ = std::thread([this] { SupervisorLoop(); });
  return true;
}

// Whether queued items outnumber the workers that are awake and not running an op (they
// take the next items without being woken), while some worker sleeps. Under mu_.
bool SessionPool::NeedsWorkerLocked() const {
  size_t awake_free = workers_.size() - waiting_ - busy_;
  return waiting_ > 0 && queue_.size() > awake_free;
}

bool SessionPool::Submit(Batch* b, OpError* err) {
  bool wake = false;
  size_t n = b->ops.size();
  b->results.resize(n);
  b->remaining.store(n, std::memory_order_release);
  {
    std::lock_guard<std::mutex> g(mu_);
    PoolState s = state_.load(std::memory_order_acquire);
    if (closing_ || s == PoolState::kClosed) {
      *err = OpError::Hyokd(kClosed, false, "the HSM module is closed");
      return false;
    }
    if (s == PoolState::kRecovering) {
      *err = OpError::Hyokd(kUnavailable, true, "the HSM is being re-initialized; retry");
      return false;
    }
    if (queue_.size() + n > opts_.queue_capacity) {
      rejected_full_.fetch_add(1, std::memory_order_relaxed);
      *err = OpError::Hyokd(kQueueFull, true, "the HSM submission queue is full; back off");
      return false;
    }
    for (size_t i = 0; i < n; i++) queue_.push_back(Item{b, static_cast<uint32_t>(i)});
    wake = NeedsWorkerLocked();
  }
  // At most one wake-up from the submitting (JS) thread, and none while awake workers
  // will take the items anyway; a worker that takes an item and leaves a backlog wakes
  // the next (WorkerLoop).
  if (wake) work_cv_.notify_one();
  return true;
}

void SessionPool::WorkerLoop(size_t index) {
  StartHelperThread("hyokd-hsm-" + std::to_string(index));
  Worker& w = workers_[index];
  for (;;) {
    Item item;
    bool more = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      while (!(stop_ || (!queue_.empty() && !paused_ && state_.load() != PoolState::kRecovering))) {
        waiting_++;
        work_cv_.wait(lk);
        waiting_--;
      }
      if (queue_.empty() || (stop_ && state_.load() == PoolState::kRecovering)) {
        if (stop_) break;
        continue;
      }
      item = queue_.front();
      queue_.pop_front();
      busy_++;
      more = NeedsWorkerLocked();
    }
    // Pass the wake-up on (see Submit) when a backlog is left and another worker sleeps.
    if (more) work_cv_.notify_one();
    RunItem(w, item);
    {
      std::lock_guard<std::mutex> g(mu_);
      busy_--;
    }
    idle_cv_.notify_all();
    FinishItem(item.batch);
  }
  if (w.session != CK_INVALID_HANDLE && w.generation == module_->generation()) {
    module_->fl()->C_CloseSession(w.session);
  }
  w.session = CK_INVALID_HANDLE;
}

void SessionPool::FinishItem(Batch* b) {
  if (b->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) done_(b);
}

CK_RV SessionPool::EnsureSession(Worker& w) {
  uint64_t gen = module_->generation();
  if (w.session != CK_INVALID_HANDLE && w.generation == gen) return CKR_OK;
  // After a re-initialization the old handle is meaningless: do not close it.
  w.session = CK_INVALID_HANDLE;
  CK_RV rv = module_->OpenSession(&w.session);
  if (rv != CKR_OK) {
    w.session = CK_INVALID_HANDLE;
    return rv;
  }
  w.generation = gen;
  return CKR_OK;
}

bool SessionPool::TakeFault(CK_RV* rv) {
  uint64_t n = fault_count_.load(std::memory_order_acquire);
  while (n > 0) {
    if (fault_count_.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel)) {
      *rv = fault_rv_.load(std::memory_order_acquire);
      return true;
    }
  }
  return false;
}

void SessionPool::RunItem(Worker& w, Item item) {
  Batch* b = item.batch;
  Op& op = b->ops[item.index];
  OpResult& res = b->results[item.index];
  if (b->deadline_ns != 0 && NowNs() > b->deadline_ns) {
    res.error = OpError::Hyokd(kDeadline, false, "the deadline passed before the HSM step started");
    CountError(res.error.code);
    return;
  }
  Context ctx(this, &w);
  bool reopened = false, relogged = false, reresolved = false;
  for (int attempt = 0; attempt < 4; attempt++) {
    res.Reset();
    CK_RV rv = EnsureSession(w);
    if (rv == CKR_OK) {
      CK_RV injected;
      if (TakeFault(&injected)) {
        rv = injected;
        res.error = OpError::FromRv(rv, OpKindName(op.kind));
      } else {
        rv = Execute(op, ctx, &res);
      }
    } else {
      res.error = OpError::FromRv(rv, "C_OpenSession");
    }
    if (rv == CKR_OK || rv == kHyokdFailure) break;
    Recovery rec = RecoveryFor(rv);
    if (rec == Recovery::kNone) rec = SessionHealth(w);
    if (rec == Recovery::kReopenSession && !reopened) {
      reopened = true;
      reopens_.fetch_add(1, std::memory_order_relaxed);
      module_->fl()->C_CloseSession(w.session);
      w.session = CK_INVALID_HANDLE;
      continue;
    }
    if (rec == Recovery::kRelogin && !relogged) {
      relogged = true;
      if (module_->Relogin() == CKR_OK) continue;
      break;
    }
    if (rec == Recovery::kReresolve && !reresolved) {
      reresolved = true;
      // A stale handle: drop the entry and any copy with it (left behind, a copy would
      // live, unreachable, as long as the login).
      EvictKey(op.key);
      if (op.kind == OpKind::kWrapKey) EvictKey(op.key2);
      continue;
    }
    if (rec == Recovery::kReinitModule) RequestReinit();
    break;
  }
  if (res.ok) {
    op_counts_[static_cast<int>(op.kind)].fetch_add(1, std::memory_order_relaxed);
  } else {
    CountError(res.error.code);
  }
  // Inputs that may be secret are zeroed as soon as the worker is done with them.
  op.data.Clear();
}

// A call that fails with a data-level code on a session that is no longer there (closed
// or logged out under it, e.g. by C_CloseAllSessions mid-operation; SoftHSM2 then says
// CKR_GENERAL_ERROR) is a session failure, not a bad input: ask the session.
Recovery SessionPool::SessionHealth(Worker& w) {
  CK_SESSION_INFO si{};
  CK_RV rv = module_->fl()->C_GetSessionInfo(w.session, &si);
  if (rv != CKR_OK) {
    Recovery r = RecoveryFor(rv);
    return r == Recovery::kNone ? Recovery::kReopenSession : r;
  }
  if (si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS)
    return Recovery::kRelogin;
  return Recovery::kNone;
}

bool SessionPool::Resolve(Worker& w, const KeyRef& key, bool hot, CK_OBJECT_HANDLE* out,
                          OpError* err) {
  std::string ck = key.CacheKey();
  uint64_t gen = module_->generation();
  CachedKey checking;
  {
    std::shared_lock<std::shared_mutex> g(cache_mu_);
    auto it = cache_.find(ck);
    if (it != cache_.end() && it->second.generation == gen) {
      const CachedKey& e = it->second;
      if (!hot || e.copy == CK_INVALID_HANDLE) {
        *out = e.handle;
        return true;
      }
      // A copy outlives its token object: one worker at a time checks the token object
      // once its check is due; the others go on using the copy meanwhile.
      int64_t now = NowNs();
      int64_t due = e.check_due->load(std::memory_order_relaxed);
      if (now < due || !e.check_due->compare_exchange_strong(due, now + opts_.copy_recheck_ns,
                                                             std::memory_order_relaxed)) {
        *out = e.copy;
        return true;
      }
      checking = e;
    }
  }
  if (checking.copy != CK_INVALID_HANDLE) {
    if (CopyStillValid(w, key, checking)) {
      *out = checking.copy;
      return true;
    }
    // Destroyed, disabled, renamed or otherwise changed behind hyokd's back (or the check
    // itself failed): drop the copy and look the key up again, as without copies.
    DropCopy(ck, checking);
  }
  resolves_.fetch_add(1, std::memory_order_relaxed);
  CK_FUNCTION_LIST* fl = module_->fl();
  Template t;
  t.Ulong(CKA_CLASS, key.cls);
  t.Bytes(CKA_ID, key.id.data(), key.id.size());
  t.Bool(CKA_TOKEN, key.token);
  CK_OBJECT_HANDLE found[2];
  CK_ULONG n = 0;
  for (int pass = 0; pass < 2; pass++) {
    CK_RV rv = fl->C_FindObjectsInit(w.session, t.data(), t.size());
    if (rv != CKR_OK) {
      *err = OpError::FromRv(rv, "C_FindObjectsInit");
      return false;
    }
    rv = fl->C_FindObjects(w.session, found, 2, &n);
    fl->C_FindObjectsFinal(w.session);
    if (rv != CKR_OK) {
      *err = OpError::FromRv(rv, "C_FindObjects");
      return false;
    }
    if (n > 0 || pass == 1) break;
    // Private objects are invisible while the token is logged out (for example after
    // every session was closed, possibly while this search ran): make sure of the login
    // and search once more before calling the key missing.
    CK_SESSION_INFO si{};
    if (fl->C_GetSessionInfo(w.session, &si) != CKR_OK) break;
    if (si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS &&
        module_->Relogin() != CKR_OK) {
      break;
    }
  }
  if (n == 0) {
    *err = OpError::Hyokd(kKeyNotFound, false, "no key with that id and class on the token");
    return false;
  }
  if (n > 1) {
    *err = OpError::Hyokd(kKeyAmbiguous, false, "more than one key has that id and class");
    return false;
  }
  CachedKey entry;
  entry.handle = found[0];
  entry.generation = gen;
  std::unique_lock<std::shared_mutex> g(cache_mu_);
  auto it = cache_.find(ck);
  if (it != cache_.end() && it->second.generation == gen && it->second.handle == entry.handle) {
    entry = it->second;  // another worker got here first, with its copy
  } else if (opts_.session_copies && hot && key.token && key.cls == CKO_SECRET_KEY) {
    // A session-object copy of a hot key skips the token object's per-use file checks
    // (about 3x on SoftHSM2). It keeps CKA_SENSITIVE and CKA_EXTRACTABLE=false; it is
    // made on the keeper session so it lives as long as the login.
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    CK_RV rv = module_->WithKeeper([&](CK_SESSION_HANDLE keeper) {
      Template ct;
      ct.Bool(CKA_TOKEN, false);
      return fl->C_CopyObject(keeper, entry.handle, ct.data(), ct.size(), &copy);
    });
    if (rv == CKR_OK) {
      // The copy's own flags are what it allows; its token object must keep them.
      if (ReadUsage(w.session, copy, &entry.usage)) {
        entry.copy = copy;
        entry.check_due = std::make_shared<std::atomic<int64_t>>(NowNs() + opts_.copy_recheck_ns);
      } else {
        DestroyCopy(copy, gen);
      }
    }
    if (it != cache_.end()) DestroyCopy(it->second.copy, it->second.generation);
  }
  cache_[ck] = entry;
  *out = hot && entry.copy != CK_INVALID_HANDLE ? entry.copy : entry.handle;
  return true;
}

namespace {
constexpr CK_BBOOL kNoFlag = 0xff;
constexpr std::array<CK_ATTRIBUTE_TYPE, 7> kUsageTypes = {
    CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP, CKA_SIGN, CKA_VERIFY, CKA_DERIVE};
}  // namespace

// The usage flags of object `h`; an attribute the module does not have for it reads as
// kNoFlag. False if the object cannot be read.
bool SessionPool::ReadUsage(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE h, Usage* out) {
  static_assert(kUsageTypes.size() == kUsageFlags);
  std::array<CK_ATTRIBUTE, kUsageFlags> attrs{};
  for (size_t i = 0; i < kUsageFlags; i++) {
    (*out)[i] = kNoFlag;
    attrs[i] = {kUsageTypes[i], &(*out)[i], sizeof(CK_BBOOL)};
  }
  CK_RV rv = module_->fl()->C_GetAttributeValue(session, h, attrs.data(), attrs.size());
  if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID) return false;
  for (size_t i = 0; i < kUsageFlags; i++) {
    if (attrs[i].ulValueLen != sizeof(CK_BBOOL)) (*out)[i] = kNoFlag;
  }
  return true;
}

// Whether `entry`'s token object is still the key its copy was made from: there, with
// the key's id and class, and with the usage flags the copy has.
bool SessionPool::CopyStillValid(Worker& w, const KeyRef& key, const CachedKey& entry) {
  CK_OBJECT_CLASS cls = CK_UNAVAILABLE_INFORMATION;
  std::vector<uint8_t> id(key.id.size() + 1);
  CK_ATTRIBUTE attrs[] = {{CKA_CLASS, &cls, sizeof(cls)},
                          {CKA_ID, id.data(), static_cast<CK_ULONG>(id.size())}};
  if (module_->fl()->C_GetAttributeValue(w.session, entry.handle, attrs, 2) != CKR_OK) return false;
  if (cls != key.cls || attrs[1].ulValueLen != key.id.size() ||
      !std::equal(key.id.begin(), key.id.end(), id.begin())) {
    return false;
  }
  Usage now;
  return ReadUsage(w.session, entry.handle, &now) && now == entry.usage;
}

// Removes `entry` from the cache if it is still there with that copy, and destroys the copy.
void SessionPool::DropCopy(const std::string& ck, const CachedKey& entry) {
  {
    std::unique_lock<std::shared_mutex> g(cache_mu_);
    auto it = cache_.find(ck);
    if (it == cache_.end() || it->second.copy != entry.copy) return;  // someone else did
    cache_.erase(it);
  }
  copies_dropped_.fetch_add(1, std::memory_order_relaxed);
  DestroyCopy(entry.copy, entry.generation);
}

// Destroys a session copy made under module generation `generation` (none if invalid; a
// copy of an earlier generation died with it, and its handle may name another object now).
void SessionPool::DestroyCopy(CK_OBJECT_HANDLE copy, uint64_t generation) {
  if (copy == CK_INVALID_HANDLE || generation != module_->generation()) return;
  CK_FUNCTION_LIST* fl = module_->fl();
  module_->WithKeeper([&](CK_SESSION_HANDLE keeper) { return fl->C_DestroyObject(keeper, copy); });
}

void SessionPool::EvictKey(const KeyRef& key) {
  CachedKey entry;
  {
    std::unique_lock<std::shared_mutex> g(cache_mu_);
    auto it = cache_.find(key.CacheKey());
    if (it == cache_.end()) return;
    entry = it->second;
    cache_.erase(it);
  }
  DestroyCopy(entry.copy, entry.generation);
}

void SessionPool::RequestReinit() {
  {
    std::lock_guard<std::mutex> g(mu_);
    PoolState expected = PoolState::kReady;
    if (!state_.compare_exchange_strong(expected, PoolState::kRecovering)) return;
    reinit_requested_ = true;
  }
  super_cv_.notify_all();
}

void SessionPool::SupervisorLoop() {
  StartHelperThread("hyokd-hsm-sup");
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    super_cv_.wait(lk, [&] { return stop_ || reinit_requested_; });
    if (stop_) return;
    reinit_requested_ = false;
    // Queued work fails fast with a retriable error rather than waiting for a device
    // that may take long to come back.
    std::deque<Item> failed;
    failed.swap(queue_);
    lk.unlock();
    for (Item& it : failed) {
      it.batch->results[it.index].error =
          OpError::Hyokd(kUnavailable, true, "the HSM is being re-initialized; retry");
      CountError(kUnavailable);
      FinishItem(it.batch);
    }
    lk.lock();
    idle_cv_.wait(lk, [&] { return busy_ == 0; });
    int64_t backoff_ms = 100;
    while (!stop_) {
      lk.unlock();
      OpError err;
      CK_RV rv = module_->Reinitialize(&err);
      lk.lock();
      if (rv == CKR_OK) {
        {
          std::unique_lock<std::shared_mutex> g(cache_mu_);
          cache_.clear();  // every handle and session copy died with the old init
        }
        reinits_.fetch_add(1, std::memory_order_relaxed);
        state_.store(closing_ ? PoolState::kClosing : PoolState::kReady, std::memory_order_release);
        break;
      }
      super_cv_.wait_for(lk, std::chrono::milliseconds(backoff_ms), [&] { return stop_; });
      backoff_ms = std::min<int64_t>(backoff_ms * 2, 5000);
    }
    work_cv_.notify_all();
  }
}

void SessionPool::CountError(const std::string& code) {
  std::lock_guard<std::mutex> g(err_mu_);
  err_counts_[code]++;
}

CK_RV SessionPool::CloseAllSessions() {
  CK_RV rv;
  {
    std::unique_lock<std::mutex> lk(mu_);
    paused_ = true;
    idle_cv_.wait(lk, [&] { return busy_ == 0; });
    rv = module_->CloseAllSessions();
    paused_ = false;
  }
  work_cv_.notify_all();
  return rv;
}

void SessionPool::InjectFault(CK_RV rv, uint64_t count) {
  fault_rv_.store(rv, std::memory_order_release);
  fault_count_.store(count, std::memory_order_release);
}

PoolCounters SessionPool::Counters() {
  PoolCounters c;
  {
    std::lock_guard<std::mutex> g(mu_);
    c.queue_depth = queue_.size();
    c.busy = busy_;
  }
  c.state = state_.load();
  c.queue_capacity = opts_.queue_capacity;
  c.sessions = workers_.size();
  for (int i = 0; i < kOpKindCount; i++) c.ops[i] = op_counts_[i].load(std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> g(err_mu_);
    c.errors = err_counts_;
  }
  c.reinits = reinits_.load();
  c.session_reopens = reopens_.load();
  c.relogins = module_->relogins.load();
  c.handle_resolves = resolves_.load();
  c.copies_dropped = copies_dropped_.load();
  c.rejected_queue_full = rejected_full_.load();
  return c;
}

void SessionPool::Close() {
  {
    std::unique_lock<std::mutex> lk(mu_);
    if (state_.load() == PoolState::kClosed) return;
    closing_ = true;
    if (state_.load() != PoolState::kRecovering) state_.store(PoolState::kClosing);
    // Drain: queued items still run (or fail fast if the module is recovering).
    idle_cv_.wait(lk, [&] {
      return (queue_.empty() || state_.load() == PoolState::kRecovering) && busy_ == 0;
    });
    stop_ = true;
  }
  work_cv_.notify_all();
  super_cv_.notify_all();
  for (Worker& w : workers_) {
    if (w.thread.joinable()) w.thread.join();
  }
  if (supervisor_.joinable()) supervisor_.join();
  // Anything still queued (the module was recovering when we stopped) fails now.
  std::deque<Item> left;
  {
    std::lock_guard<std::mutex> g(mu_);
    left.swap(queue_);
  }
  for (Item& it : left) {
    it.batch->results[it.index].error = OpError::Hyokd(kClosed, false, "the HSM module is closed");
    FinishItem(it.batch);
  }
  {
    std::unique_lock<std::shared_mutex> g(cache_mu_);
    cache_.clear();  // session copies die with the keeper session
  }
  state_.store(PoolState::kClosed);
}

}  // namespace hyokd
