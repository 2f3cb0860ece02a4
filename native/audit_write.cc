// The audit writer's helper thread, in native code: chains a batch of caller records
// (serialized and packed by the event loop, src/audit/chain-batch.ts) and writes it to
// the audit file's descriptor, which the writer opened O_DSYNC, so the write returns once
// the batch is durable. src/audit/write-offload.ts is its only user and holds the rules;
// this file is the mechanism.
//
// Why native and not a worker_threads Worker: on the data plane every batch crossed two
// MessagePorts (a structured clone on the loop, an event dispatched on each side) and the
// worker ran its own V8 isolate for a few string joins and SHA-256s. Here a hand-over is
// one Node-API call that copies the packed string and signals a condition variable, the
// chaining is plain string building with OpenSSL's SHA-256 (Node's own libcrypto), and
// the answers of every batch finished meanwhile reach JS in one threadsafe-function call.
//
// The bytes a record gets are those of `chainLine` in src/audit/canonical.ts, built the
// same way (segments, then prev, seq, ts, then the hash over the line without it): the
// file does not depend on which side built a batch, and the tests compare both.
//
// One job at a time, in order. A job goes after a given record at a given offset, or
// right after the previous job's batch: this thread keeps that point and forgets it
// whenever a job is not written. A job handed over before a cancel() and not yet begun
// is answered "cancelled", as is a follow-on of a job that was not written. A job this
// thread cannot parse (a bug on the JS side) is answered "dead" and the thread stops.

#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "audit_write.h"
#include "convert.h"
#include "helper_thread.h"
#include "napi.h"

namespace hyokd {

namespace {

constexpr char kSegmentSep = '\x1f';
constexpr char kRecordSep = '\x1e';

struct WriteJob {
  double id = 0;
  int fd = -1;
  std::string packed;
  int64_t seq = 0;
  std::string ts;
  bool after_previous = false;
  std::string prev;
  int64_t position = 0;
  int64_t limit = -1;
  uint32_t epoch = 0;
};

enum class AnswerKind { kWritten = 0, kOver = 1, kError = 2, kCancelled = 3, kDead = 4 };

struct WriteAnswer {
  double id = 0;
  AnswerKind kind = AnswerKind::kWritten;
  // written: the new head's hash; error: the errno name.
  std::string text;
  // written: the batch's bytes; over: the bytes it would take; error: those written before it.
  int64_t bytes = 0;
  int64_t position = 0;
};

class AuditWriteThread;

// Shared by the JS object and the thread, so either may go first. Everything but
// `epoch` and `held` is guarded by `mu`; `owner` is touched on the JS thread only.
struct State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<WriteJob> jobs;
  std::vector<WriteAnswer> answers;
  bool delivery_scheduled = false;
  bool stopping = false;
  // The environment is being torn down: the threadsafe function may be gone, so the
  // thread must not touch it again.
  bool exiting = false;
  std::atomic<uint32_t> epoch{0};
  // Test hook (_testHold): while `held`, a job that is about to be written waits there,
  // as a write to a hung disk would; `holding` says one does. `held` is written under `mu`
  // and read without it first, so the hook costs the write path no lock while off.
  std::atomic<bool> held{false};
  bool holding = false;
  Napi::ThreadSafeFunction tsfn;
  AuditWriteThread* owner = nullptr;
};

using Segments = std::array<std::string_view, 5>;

// SHA-256 of the concatenated `parts`, in lowercase hex; "" if OpenSSL fails.
std::string HexDigest(std::initializer_list<std::string_view> parts) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  for (std::string_view p : parts) {
    ok = ok && EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1;
  }
  if (!ok || EVP_DigestFinal_ex(ctx.get(), md, &len) != 1 || len != 32) return std::string();
  static const char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (unsigned int i = 0; i < 32; i++) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 0xf];
  }
  return out;
}

// Splits `packed` into records of five segments (views into `packed`); false if it is not
// what packBatch makes.
bool Unpack(const std::string& packed, std::vector<Segments>* out) {
  out->clear();
  if (packed.empty()) return true;
  size_t start = 0;
  while (true) {
    size_t end = packed.find(kRecordSep, start);
    if (end == std::string::npos) end = packed.size();
    auto first = packed.begin() + static_cast<std::ptrdiff_t>(start);
    auto last = packed.begin() + static_cast<std::ptrdiff_t>(end);
    if (std::count(first, last, kSegmentSep) != 4) return false;
    Segments seg;
    std::string_view whole(packed);
    size_t s = start;
    for (int i = 0; i < 5; i++) {
      size_t e = i < 4 ? packed.find(kSegmentSep, s) : end;
      seg[i] = whole.substr(s, e - s);
      s = e + 1;
    }
    out->push_back(seg);
    if (end == packed.size()) return true;
    start = end + 1;
  }
}

// chainLine of src/audit/canonical.ts, for a whole batch: appends each record's line and
// newline to `text`; returns the last hash (or `prev` for no records, "" if hashing failed).
std::string ChainBatch(const std::vector<Segments>& bodies, int64_t seq, const std::string& ts,
                       std::string prev, std::string* text) {
  std::string post;
  std::string head;
  for (size_t i = 0; i < bodies.size(); i++) {
    const auto& seg = bodies[i];
    post.clear();
    if (!seg[1].empty()) post.append(seg[1]).append(",");
    post.append("\"prev\":\"").append(prev).append("\"");
    if (!seg[2].empty()) post.append(",").append(seg[2]);
    post.append(",\"seq\":").append(std::to_string(seq + static_cast<int64_t>(i)));
    if (!seg[3].empty()) post.append(",").append(seg[3]);
    post.append(",\"ts\":\"").append(ts).append("\"");
    if (!seg[4].empty()) post.append(",").append(seg[4]);
    head.assign("{");
    if (!seg[0].empty()) head.append(seg[0]).append(",");
    std::string hash = HexDigest({head, post, "}"});
    if (hash.empty()) return hash;
    text->append(head).append("\"hash\":\"").append(hash).append("\",").append(post).append("}\n");
    prev = std::move(hash);
  }
  return prev;
}

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? std::string(name) : std::string("UNKNOWN");
}

using StateRef = std::shared_ptr<State>;

// The test hook's wait: returns false if the object is stopping (the job is then dropped).
bool HoldBeforeWrite(State& state) {
  if (!state.held.load()) return true;
  std::unique_lock<std::mutex> lock(state.mu);
  if (!state.held.load()) return true;
  state.holding = true;
  state.cv.wait(lock, [&] { return !state.held || state.stopping; });
  state.holding = false;
  return !state.stopping;
}

void Deliver(Napi::Env env, Napi::Function, StateRef* ref);

// The thread's body. `state` outlives it (the thread holds a reference).
void Run(std::shared_ptr<State> state) {
  StartHelperThread("hyokd-audit");
  bool have_end = false;
  std::string end_prev;
  int64_t end_position = 0;
  std::vector<Segments> bodies;
  std::string text;
  bool dead = false;
  while (!dead) {
    WriteJob job;
    {
      std::unique_lock<std::mutex> lock(state->mu);
      state->cv.wait(lock, [&] { return state->stopping || !state->jobs.empty(); });
      if (state->stopping) break;
      job = std::move(state->jobs.front());
      state->jobs.pop_front();
    }
    WriteAnswer a;
    a.id = job.id;
    std::string prev = job.prev;
    int64_t position = job.position;
    if (job.after_previous) {
      prev = end_prev;
      position = end_position;
    }
    bool at_known = !job.after_previous || have_end;
    have_end = false;
    text.clear();
    std::string hash;
    if (!at_known) {
      a.kind = AnswerKind::kCancelled;
    } else if (!Unpack(job.packed, &bodies) ||
               (hash = ChainBatch(bodies, job.seq, job.ts, prev, &text)).empty()) {
      a.kind = AnswerKind::kDead;
      dead = true;
    } else if (job.limit >= 0 && static_cast<int64_t>(text.size()) > job.limit) {
      a.kind = AnswerKind::kOver;
      a.bytes = static_cast<int64_t>(text.size());
    } else if (state->epoch.load() != job.epoch) {
      // Read last: a cancel that came while this batch was being chained still counts.
      a.kind = AnswerKind::kCancelled;
    } else {
      if (!HoldBeforeWrite(*state)) break;
      size_t off = 0;
      int err = 0;
      while (off < text.size()) {
        ssize_t n = pwrite(job.fd, text.data() + off, text.size() - off,
                           static_cast<off_t>(position + static_cast<int64_t>(off)));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          err = n < 0 ? errno : EIO;
          break;
        }
        off += static_cast<size_t>(n);
      }
      a.position = position;
      if (err != 0) {
        a.kind = AnswerKind::kError;
        a.text = ErrnoName(err);
        a.bytes = static_cast<int64_t>(off);
      } else {
        a.kind = AnswerKind::kWritten;
        a.text = hash;
        a.bytes = static_cast<int64_t>(text.size());
        end_prev = hash;
        end_position = position + static_cast<int64_t>(text.size());
        have_end = true;
      }
    }
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->exiting) return;
    state->answers.push_back(std::move(a));
    if (!state->delivery_scheduled) {
      state->delivery_scheduled = true;
      // The call holds its own reference: the JS object and this thread may both be gone
      // by the time it runs.
      auto* ref = new StateRef(state);
      if (state->tsfn.NonBlockingCall(ref, Deliver) != napi_ok) delete ref;
    }
  }
  std::lock_guard<std::mutex> lock(state->mu);
  if (!state->exiting) state->tsfn.Release();
}

class AuditWriteThread : public Napi::ObjectWrap<AuditWriteThread> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "AuditWriteThread",
                       {InstanceMethod<&AuditWriteThread::Write>("write"),
                        InstanceMethod<&AuditWriteThread::Cancel>("cancel"),
                        InstanceMethod<&AuditWriteThread::Poll>("poll"),
                        InstanceMethod<&AuditWriteThread::Close>("close"),
                        InstanceMethod<&AuditWriteThread::TestHold>("_testHold"),
                        InstanceMethod<&AuditWriteThread::TestHolding>("_testHolding")});
  }

  // new AuditWriteThread(onAnswers): onAnswers(answers) gets a flat array, five entries
  // per answer: id, kind (AnswerKind), text, bytes, position.
  explicit AuditWriteThread(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<AuditWriteThread>(info) {
    Napi::Env env = info.Env();
    if (info.Length() != 1 || !info[0].IsFunction()) {
      throw Napi::TypeError::New(env, "new AuditWriteThread(onAnswers: function)");
    }
    on_answers_ = Napi::Persistent(info[0].As<Napi::Function>());
    state_ = std::make_shared<State>();
    state_->owner = this;
    state_->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "hyokd-audit-write", 0, 1);
    // Keeps the process alive only while jobs are out (Write, Answer).
    state_->tsfn.Unref(env);
    env_ = env;
    napi_add_env_cleanup_hook(env_, CleanupHook, this);
    std::thread(Run, state_).detach();
  }

  ~AuditWriteThread() override {
    Stop();
    if (hooked_) napi_remove_env_cleanup_hook(env_, CleanupHook, this);
  }

  // Hands the answers ready now to onAnswers (from poll() or the threadsafe function, on
  // the JS thread); false if there were none or the object is stopped.
  bool DeliverReady(Napi::Env env) {
    std::vector<WriteAnswer> answers;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->owner == nullptr) return false;
      answers.swap(state_->answers);
    }
    if (answers.empty()) return false;
    Answer(env, &answers);
    return true;
  }

 private:
  void Answer(Napi::Env env, std::vector<WriteAnswer>* answers) {
    inflight_ = answers->size() >= inflight_ ? 0 : inflight_ - answers->size();
    if (inflight_ == 0) state_->tsfn.Unref(env);
    Napi::Array out = Napi::Array::New(env, answers->size() * 5);
    uint32_t k = 0;
    for (const WriteAnswer& a : *answers) {
      out.Set(k++, Napi::Number::New(env, a.id));
      out.Set(k++, Napi::Number::New(env, static_cast<double>(a.kind)));
      out.Set(k++, Napi::String::New(env, a.text));
      out.Set(k++, Napi::Number::New(env, static_cast<double>(a.bytes)));
      out.Set(k++, Napi::Number::New(env, static_cast<double>(a.position)));
    }
    on_answers_.Call({out});
  }

  static void CleanupHook(void* arg) {
    auto* self = static_cast<AuditWriteThread*>(arg);
    self->hooked_ = false;
    std::lock_guard<std::mutex> lock(self->state_->mu);
    self->state_->exiting = true;
    self->state_->stopping = true;
    self->state_->cv.notify_all();
  }

  // Ends the thread after the job it is on (JS thread only); jobs not begun are dropped.
  void Stop() {
    if (inflight_ > 0 && !state_->exiting) state_->tsfn.Unref(env_);
    inflight_ = 0;
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->owner = nullptr;
    state_->stopping = true;
    state_->jobs.clear();
    state_->cv.notify_all();
  }

  // An integer argument in [min, 2^53 - 1] (convert.h's IntegerValue).
  static int64_t Integer(Napi::Env env, const Napi::Value& v, const char* name, double min,
                         double max = 9007199254740991.0) {
    return static_cast<int64_t>(IntegerValue(env, v, name, min, max));
  }

  // write(id, fd, packed, seq, ts, prev | null, position, limit): queues a job; its answer
  // comes through onAnswers. prev null: right after the previous job's batch.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 8 || !info[2].IsString() || !info[4].IsString() ||
        !(info[5].IsString() || info[5].IsNull())) {
      throw Napi::TypeError::New(
          env,
          "write(id, fd, packed: string, seq, ts: string, prev: string | null, position, limit)");
    }
    WriteJob job;
    job.id = static_cast<double>(Integer(env, info[0], "id", 0));
    job.fd = static_cast<int>(Integer(env, info[1], "fd", 0, INT32_MAX));
    job.packed = info[2].As<Napi::String>().Utf8Value();
    job.seq = Integer(env, info[3], "seq", 0);
    job.ts = info[4].As<Napi::String>().Utf8Value();
    job.after_previous = info[5].IsNull();
    if (!job.after_previous) job.prev = info[5].As<Napi::String>().Utf8Value();
    job.position = Integer(env, info[6], "position", 0);
    job.limit = Integer(env, info[7], "limit", -1);
    job.epoch = state_->epoch.load();
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->stopping) throw Napi::Error::New(env, "audit write thread stopped");
      state_->jobs.push_back(std::move(job));
    }
    // After the unlock: a thread woken while the lock is still held would only block on it.
    state_->cv.notify_one();
    if (inflight_++ == 0) state_->tsfn.Ref(env);
    return env.Undefined();
  }

  // poll(): hands the answers ready now to onAnswers at once (true if there were any),
  // instead of when the loop gets to the threadsafe-function call. Under load that call
  // waited about a millisecond behind the loop's other I/O, and every call whose record
  // was in the batch waited with it; the writer polls at each append while batches are out.
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), DeliverReady(info.Env()));
  }

  // Every job handed over before this call that the thread has not begun is answered cancelled.
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    state_->epoch.fetch_add(1);
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  // Test hook, a hung disk: _testHold(true) stops the thread before its next write (the
  // batch is chained and its cancel check passed, as if write() had not returned) until
  // _testHold(false); _testHolding() says whether a job waits there now.
  Napi::Value TestHold(const Napi::CallbackInfo& info) {
    if (info.Length() != 1 || !info[0].IsBoolean()) {
      throw Napi::TypeError::New(info.Env(), "_testHold(on: boolean)");
    }
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->held = info[0].As<Napi::Boolean>().Value();
    state_->cv.notify_all();
    return info.Env().Undefined();
  }

  Napi::Value TestHolding(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(state_->mu);
    return Napi::Boolean::New(info.Env(), state_->holding);
  }

  Napi::FunctionReference on_answers_;
  std::shared_ptr<State> state_;
  Napi::Env env_ = nullptr;
  size_t inflight_ = 0;  // jobs handed over and not answered (JS thread only)
  bool hooked_ = true;
};

void Deliver(Napi::Env env, Napi::Function, StateRef* ref) {
  std::unique_ptr<StateRef> owned(ref);
  State* state = ref->get();
  AuditWriteThread* owner;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->delivery_scheduled = false;
    owner = state->owner;
  }
  if (env == nullptr || owner == nullptr) return;
  Napi::HandleScope scope(env);
  try {
    owner->DeliverReady(env);
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();  // an uncaught exception in JS, not a C++ terminate
  }
}

}  // namespace

Napi::Function AuditWriteThreadClass(Napi::Env env) { return AuditWriteThread::Init(env); }

}  // namespace hyokd
