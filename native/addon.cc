// The Node-API surface: `open()` gives an Hsm object whose `submit()` takes an array of
// ops and returns one promise for all their results (one crossing in, one crossing out).
// Completions come back through one thread-safe function per Hsm; a cleanup hook closes
// everything if the process exits with the module still open.
#include <napi.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "audit_write.h"
#include "convert.h"
#include "module.h"
#include "session_pool.h"

namespace hyokd {

namespace {

class Hsm;

struct Pending {
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference self;  // keeps the Hsm alive while work is in flight
  explicit Pending(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

Napi::Error MakeError(Napi::Env env, const OpError& e) {
  Napi::Error err = Napi::Error::New(env, e.message);
  err.Set("code", e.code);
  err.Set("rv", Napi::Number::New(env, static_cast<double>(e.rv)));
  err.Set("retriable", e.retriable);
  return err;
}

size_t DefaultSessions(const TokenSnapshot& snap) {
  size_t cores = std::thread::hardware_concurrency();
  if (cores == 0) cores = 2;
  size_t n = cores;
  CK_ULONG max = snap.token.ulMaxSessionCount;
  // One session is the keeper; leave the rest of the token's limit to the workers.
  if (max != CK_UNAVAILABLE_INFORMATION && max != CK_EFFECTIVELY_INFINITE && max > 1) {
    n = std::min<size_t>(n, max - 1);
  }
  return std::max<size_t>(n, 1);
}

// A completed batch's results. A successful decrypt (every unwrap on the data plane) is
// only its plaintext's length: the plaintexts lie side by side, in item order, in one
// ArrayBuffer set as the array's `bytes`, and the JS side makes each item's Buffer view
// and result object (native-backend.ts). Made here, each Buffer and each object cost a
// Node-API allocation, a prototype change and two property stores: in a CPU profile about
// half of the 6.5-7.7 us of JS-thread time a decrypt in a batch cost on the 2-core
// machine (4.4-5.5 us in all since). Every other result is an object (ResultToJs).
Napi::Array ResultsToJs(Props& props, Batch& batch) {
  Napi::Env env = props.env();
  size_t n = batch.results.size();
  auto packed = [&](size_t i) {
    return batch.ops[i].kind == OpKind::kDecrypt && batch.results[i].ok;
  };
  size_t total = 0;
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    if (packed(i)) {
      any = true;
      total += batch.results[i].out.size();
    }
  }
  Napi::Array out = Napi::Array::New(env, n);
  uint8_t* base = nullptr;
  if (any) {
    Napi::ArrayBuffer bytes = Napi::ArrayBuffer::New(env, total);
    base = static_cast<uint8_t*>(bytes.Data());
    out.Set(props(Prop::kBytes), bytes);
  }
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    OpResult& r = batch.results[i];
    if (packed(i)) {
      size_t len = r.out.size();
      if (len > 0) std::memcpy(base + off, r.out.data(), len);
      r.out.Clear();  // as ResultToJs: plaintext leaves native memory once copied out
      off += len;
      out.Set(i, Napi::Number::New(env, static_cast<double>(len)));
    } else {
      out.Set(i, ResultToJs(props, batch.ops[i], r));
    }
  }
  return out;
}

class Hsm : public Napi::ObjectWrap<Hsm> {
 public:
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(
        env, "Hsm",
        {InstanceMethod<&Hsm::Submit>("submit"), InstanceMethod<&Hsm::EvictKey>("evictKey"),
         InstanceMethod<&Hsm::Counters>("counters"), InstanceMethod<&Hsm::Info>("info"),
         InstanceMethod<&Hsm::Mechanisms>("mechanisms"), InstanceMethod<&Hsm::Close>("close"),
         InstanceMethod<&Hsm::TestCloseAllSessions>("_testCloseAllSessions"),
         InstanceMethod<&Hsm::TestInjectFault>("_testInjectFault")});
    env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(f)));
    return f;
  }

  explicit Hsm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Hsm>(info) {
    // Constructed only by open(); a direct `new` has no module behind it.
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "use open() to create an Hsm");
    }
    auto* parts = info[0].As<Napi::External<std::pair<Module*, SessionPool::Options>>>().Data();
    env_ = info.Env();
    keys_ = std::make_unique<PropKeys>(env_);
    module_.reset(parts->first);
    tsfn_ = Napi::ThreadSafeFunction::New(env_, Napi::Function(), "hyokd-hsm", 0, 1);
    tsfn_.Unref(env_);
    pool_ = std::make_unique<SessionPool>(module_.get(), parts->second,
                                          [this](Batch* b) { OnBatchDone(b); });
    napi_add_env_cleanup_hook(env_, CleanupHook, this);
    hooked_ = true;
  }

  ~Hsm() override { ShutdownNow(); }

  bool Start(OpError* err) { return pool_->Start(err); }

 private:
  static void CleanupHook(void* arg) {
    Hsm* self = static_cast<Hsm*>(arg);
    self->hooked_ = false;
    self->ShutdownNow();
  }

  // Process exit or GC: no JS may run; drain the pool without delivering results.
  void ShutdownNow() {
    if (hooked_) {
      napi_remove_env_cleanup_hook(env_, CleanupHook, this);
      hooked_ = false;
    }
    if (closed_) return;
    closed_ = true;
    exiting_.store(true);
    if (pool_) pool_->Close();
    if (module_) module_->Close();
    tsfn_.Abort();
  }

  void OnBatchDone(Batch* b) {
    if (exiting_.load()) {
      // Exit or GC: no JS can run, so the promise stays pending and its JS handles are
      // left to the dying environment (they must not be touched off the JS thread).
      delete b;
      return;
    }
    napi_status st = tsfn_.NonBlockingCall(b, [](Napi::Env env, Napi::Function, Batch* batch) {
      std::unique_ptr<Batch> owned(batch);
      if (env == nullptr) return;  // torn down: the environment owns what is left
      std::unique_ptr<Pending> p(static_cast<Pending*>(batch->owner));
      Napi::HandleScope scope(env);
      Hsm* self = Hsm::Unwrap(p->self.Value());
      try {
        Props props(env, self != nullptr ? self->keys_.get() : nullptr);
        p->deferred.Resolve(ResultsToJs(props, *batch));
      } catch (const Napi::Error& e) {
        p->deferred.Reject(e.Value());
      }
      if (self != nullptr) {
        self->Recycle(std::move(owned));
        if (--self->inflight_ == 0 && !self->closed_) self->tsfn_.Unref(env);
      }
    });
    if (st != napi_ok) delete b;  // the environment is going away; see above
  }

  // A completed batch's vectors are kept for the next submit: two large allocations per
  // submit made glibc consolidate its free lists every time. Only the storage is kept;
  // clear() destroys the ops and results, which zeroes their secrets. JS thread only.
  static constexpr size_t kSpareBatches = 4;
  static constexpr size_t kMaxRecycledOps = 256;

  std::unique_ptr<Batch> TakeBatch() {
    if (spare_batches_.empty()) return std::make_unique<Batch>();
    std::unique_ptr<Batch> b = std::move(spare_batches_.back());
    spare_batches_.pop_back();
    return b;
  }

  void Recycle(std::unique_ptr<Batch> b) {
    if (b == nullptr || closed_ || spare_batches_.size() >= kSpareBatches ||
        b->ops.capacity() > kMaxRecycledOps) {
      return;  // b is deleted here
    }
    b->ops.clear();
    b->results.clear();
    b->remaining.store(0, std::memory_order_relaxed);
    b->deadline_ns = 0;
    b->owner = nullptr;
    spare_batches_.push_back(std::move(b));
  }

  // submit(ops: object[], timeoutMs?: number): Promise<result[]>
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) {
      throw Napi::TypeError::New(env, "submit() takes an array of ops");
    }
    Napi::Array arr = info[0].As<Napi::Array>();
    uint32_t n = arr.Length();
    if (n == 0) throw Napi::TypeError::New(env, "submit() needs at least one op");
    if (n > 65536) throw Napi::RangeError::New(env, "a batch holds at most 65536 ops");
    int64_t deadline_ns = 0;
    if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
      if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "timeoutMs must be a number");
      double ms = info[1].As<Napi::Number>().DoubleValue();
      if (!(ms >= 0 && ms <= 86400000)) {
        throw Napi::RangeError::New(env, "timeoutMs must be between 0 and 86400000");
      }
      deadline_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count() +
                    static_cast<int64_t>(ms * 1e6);
    }
    std::unique_ptr<Batch> batch = TakeBatch();
    batch->ops.resize(n);
    Props props(env, keys_.get());
    for (uint32_t i = 0; i < n; i++) {
      // Name the item so a caller can find the bad one in a large batch.
      try {
        ParseOp(props, arr.Get(i), &batch->ops[i]);
      } catch (const Napi::RangeError& e) {
        throw Napi::RangeError::New(env, "op " + std::to_string(i) + ": " + e.Message());
      } catch (const Napi::TypeError& e) {
        throw Napi::TypeError::New(env, "op " + std::to_string(i) + ": " + e.Message());
      }
    }
    batch->deadline_ns = deadline_ns;
    if (closed_ || closing_)
      throw MakeError(env, OpError::Hyokd(kClosed, false, "the HSM module is closed"));
    auto* pending = new Pending(env);
    pending->self = Napi::Persistent(Value());
    batch->owner = pending;
    Napi::Promise promise = pending->deferred.Promise();
    if (inflight_++ == 0) tsfn_.Ref(env);
    OpError err;
    if (!pool_->Submit(batch.get(), &err)) {
      if (--inflight_ == 0) tsfn_.Unref(env);
      pending->deferred.Reject(MakeError(env, err).Value());
      delete pending;
      return promise;
    }
    batch.release();
    return promise;
  }

  Napi::Value EvictKey(const Napi::CallbackInfo& info) {
    KeyRef key;
    if (info.Length() < 1) throw Napi::TypeError::New(info.Env(), "evictKey() takes a key ref");
    Props props(info.Env(), keys_.get());
    ParseKeyRef(props, info[0], "key", &key);
    if (!closed_) pool_->EvictKey(key);
    return info.Env().Undefined();
  }

  Napi::Value Counters(const Napi::CallbackInfo& info) {
    return CountersToJs(info.Env(), pool_->Counters());
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("module", ModuleInfoToJs(env, module_->snapshot().module));
    o.Set("token", TokenToJs(env, module_->snapshot()));
    return o;
  }

  Napi::Value Mechanisms(const Napi::CallbackInfo& info) {
    if (closed_)
      throw MakeError(info.Env(), OpError::Hyokd(kClosed, false, "the HSM module is closed"));
    return MechanismsToJs(info.Env(), module_.get());
  }

  // close(): drains in-flight work off the JS thread, then logs out and finalizes.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    if (closed_ || closing_) {
      deferred.Resolve(env.Undefined());
      return deferred.Promise();
    }
    closing_ = true;
    auto* w = new CloseWorker(env, this, deferred);
    w->Queue();
    return deferred.Promise();
  }

  class CloseWorker : public Napi::AsyncWorker {
   public:
    CloseWorker(Napi::Env env, Hsm* hsm, Napi::Promise::Deferred d)
        : Napi::AsyncWorker(env), hsm_(hsm), deferred_(d), ref_(Napi::Persistent(hsm->Value())) {}
    void Execute() override {
      hsm_->pool_->Close();
      hsm_->module_->Close();
    }
    void OnOK() override {
      hsm_->closed_ = true;
      if (hsm_->hooked_) {
        napi_remove_env_cleanup_hook(hsm_->env_, CleanupHook, hsm_);
        hsm_->hooked_ = false;
      }
      hsm_->tsfn_.Release();
      deferred_.Resolve(Env().Undefined());
    }

   private:
    Hsm* hsm_;
    Napi::Promise::Deferred deferred_;
    Napi::ObjectReference ref_;
  };

  Napi::Value TestCloseAllSessions(const Napi::CallbackInfo& info) {
    if (closed_) return info.Env().Undefined();
    CK_RV rv = pool_->CloseAllSessions();
    return Napi::Number::New(info.Env(), static_cast<double>(rv));
  }

  Napi::Value TestInjectFault(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
      throw Napi::TypeError::New(env, "_testInjectFault(rv: number, count: number)");
    }
    double rv = info[0].As<Napi::Number>().DoubleValue();
    double count = info[1].As<Napi::Number>().DoubleValue();
    if (!(rv >= 0 && rv <= 0xFFFFFFFF) || !(count >= 0 && count <= 1e9)) {
      throw Napi::RangeError::New(env, "rv or count out of range");
    }
    pool_->InjectFault(static_cast<CK_RV>(rv), static_cast<uint64_t>(count));
    return env.Undefined();
  }

  Napi::Env env_ = nullptr;
  std::unique_ptr<PropKeys> keys_;                     // property names, made once (JS thread only)
  std::vector<std::unique_ptr<Batch>> spare_batches_;  // see Recycle()
  std::unique_ptr<Module> module_;
  std::unique_ptr<SessionPool> pool_;
  Napi::ThreadSafeFunction tsfn_;
  std::atomic<bool> exiting_{false};
  uint64_t inflight_ = 0;
  bool closing_ = false;
  bool closed_ = false;
  bool hooked_ = false;
};

// open(options): loads the module, finds the token, logs in and starts the pool, all off
// the JS thread.
class OpenWorker : public Napi::AsyncWorker {
 public:
  OpenWorker(Napi::Env env, ModuleOptions&& opts, SessionPool::Options pool_opts,
             bool auto_sessions)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        pool_opts_(pool_opts),
        auto_sessions_(auto_sessions) {
    opts_.path = std::move(opts.path);
    opts_.token_label = std::move(opts.token_label);
    opts_.token_serial = std::move(opts.token_serial);
    opts_.pin.Assign(opts.pin.data(), opts.pin.size());
    opts.pin.Clear();
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    module_ = Module::Open(std::move(opts_), &err_);
    if (module_ != nullptr && auto_sessions_)
      pool_opts_.sessions = DefaultSessions(module_->snapshot());
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (module_ == nullptr) {
      deferred_.Reject(MakeError(env, err_).Value());
      return;
    }
    std::pair<Module*, SessionPool::Options> parts{module_, pool_opts_};
    Napi::Object obj;
    try {
      obj = env.GetInstanceData<Napi::FunctionReference>()->New(
          {Napi::External<std::pair<Module*, SessionPool::Options>>::New(env, &parts)});
    } catch (const Napi::Error& e) {
      delete module_;
      deferred_.Reject(e.Value());
      return;
    }
    // Opening worker sessions is quick; do it here so a failure rejects open().
    OpError err;
    if (!Hsm::Unwrap(obj)->Start(&err)) {
      deferred_.Reject(MakeError(env, err).Value());
      return;
    }
    deferred_.Resolve(obj);
  }

 private:
  Napi::Promise::Deferred deferred_;
  ModuleOptions opts_;
  SessionPool::Options pool_opts_;
  bool auto_sessions_;
  Module* module_ = nullptr;
  OpError err_;
};

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "open(options)");
  Napi::Object o = info[0].As<Napi::Object>();
  ModuleOptions mo;
  auto str = [&](const char* k, bool required) -> std::string {
    Napi::Value v = o.Get(k);
    if (v.IsUndefined() || v.IsNull()) {
      if (required) throw Napi::TypeError::New(env, std::string(k) + " is required");
      return {};
    }
    if (!v.IsString()) throw Napi::TypeError::New(env, std::string(k) + " must be a string");
    return v.As<Napi::String>().Utf8Value();
  };
  mo.path = str("modulePath", true);
  mo.token_label = str("tokenLabel", false);
  mo.token_serial = str("tokenSerial", false);
  if (mo.token_label.empty() && mo.token_serial.empty()) {
    throw Napi::TypeError::New(env, "tokenLabel or tokenSerial is required");
  }
  SecretBytes pin;
  TakeSecret(env, o.Get("pin"), "pin", &pin);
  mo.pin.Assign(pin.data(), pin.size());
  pin.Clear();
  SessionPool::Options po;
  bool auto_sessions = true;
  auto num = [&](const char* k, double lo, double hi) -> double {
    Napi::Value v = o.Get(k);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(k) + " must be a number");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= lo && d <= hi)) throw Napi::RangeError::New(env, std::string(k) + " out of range");
    return d;
  };
  if (!o.Get("sessions").IsUndefined() && !o.Get("sessions").IsNull()) {
    po.sessions = static_cast<size_t>(num("sessions", 1, 256));
    auto_sessions = false;
  }
  if (!o.Get("queueCapacity").IsUndefined())
    po.queue_capacity = static_cast<size_t>(num("queueCapacity", 1, 1 << 24));
  Napi::Value sc = o.Get("sessionObjectCopies");
  if (!sc.IsUndefined()) {
    if (!sc.IsBoolean()) throw Napi::TypeError::New(env, "sessionObjectCopies must be a boolean");
    po.session_copies = sc.As<Napi::Boolean>().Value();
  }
  if (!o.Get("sessionCopyRecheckMs").IsUndefined()) {
    po.copy_recheck_ns = static_cast<int64_t>(IntegerValue(env, o.Get("sessionCopyRecheckMs"),
                                                           "sessionCopyRecheckMs", 1, 3'600'000)) *
                         1'000'000;
  }
  auto* w = new OpenWorker(env, std::move(mo), po, auto_sessions);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

class InitTokenWorker : public Napi::AsyncWorker {
 public:
  InitTokenWorker(Napi::Env env, std::string path, std::string label)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        path_(path),
        label_(label) {}
  SecretBytes so_pin, user_pin;
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    ok_ = InitToken(path_, label_, so_pin, user_pin, &slot_, &serial_, &err_);
    so_pin.Clear();
    user_pin.Clear();
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!ok_) {
      deferred_.Reject(MakeError(env, err_).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("slotId", Napi::Number::New(env, static_cast<double>(slot_)));
    o.Set("serialNumber", serial_);
    deferred_.Resolve(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_, label_, serial_;
  CK_SLOT_ID slot_ = 0;
  bool ok_ = false;
  OpError err_;
};

// initToken({ modulePath, label, soPin, userPin }): PINs are Buffers, zeroed after copy.
Napi::Value InitTokenJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(env, "initToken(options)");
  Napi::Object o = info[0].As<Napi::Object>();
  if (!o.Get("modulePath").IsString())
    throw Napi::TypeError::New(env, "modulePath must be a string");
  if (!o.Get("label").IsString()) throw Napi::TypeError::New(env, "label must be a string");
  std::string label = o.Get("label").As<Napi::String>().Utf8Value();
  if (label.empty() || label.size() > 32)
    throw Napi::RangeError::New(env, "label must be 1 to 32 bytes");
  auto* w = new InitTokenWorker(env, o.Get("modulePath").As<Napi::String>().Utf8Value(), label);
  try {
    TakeSecret(env, o.Get("soPin"), "soPin", &w->so_pin);
    TakeSecret(env, o.Get("userPin"), "userPin", &w->user_pin);
  } catch (...) {
    delete w;
    throw;
  }
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value RvName(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(info.Env(), "rvName(rv: number)");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 0xFFFFFFFF)) throw Napi::RangeError::New(info.Env(), "rv out of range");
  return Napi::String::New(info.Env(), hyokd::RvName(static_cast<CK_RV>(d)));
}

Napi::Value RvValue(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString())
    throw Napi::TypeError::New(info.Env(), "rvValue(name: string)");
  CK_RV rv;
  if (!RvFromName(info[0].As<Napi::String>().Utf8Value(), &rv)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), static_cast<double>(rv));
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("Hsm", Hsm::Init(env));
  exports.Set("open", Napi::Function::New(env, Open));
  exports.Set("initToken", Napi::Function::New(env, InitTokenJs));
  exports.Set("rvName", Napi::Function::New(env, RvName));
  exports.Set("rvValue", Napi::Function::New(env, RvValue));
  exports.Set("AuditWriteThread", AuditWriteThreadClass(env));
  return exports;
}

}  // namespace

}  // namespace hyokd

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return hyokd::InitAddon(env, exports);
}

NODE_API_MODULE(hyokd_native, InitModule)
