// JS <-> native conversion, on the JS thread only. Arguments are validated and copied
// into plain structs (wrong types raise TypeError, never a crash); results are copied
// into fresh JS values and the native copies of secrets are zeroed.
#pragma once

#include <napi.h>

#include "module.h"
#include "ops.h"
#include "session_pool.h"

namespace hyokd {

// Limits on what one op may carry across; the server enforces tighter ones.
constexpr size_t kMaxDataBytes = 1 << 20;
constexpr size_t kMaxSmallBytes = 4096;  // ids, IVs, AAD is bounded by kMaxDataBytes
constexpr size_t kMaxLabelBytes = 256;
constexpr size_t kMaxRandomBytes = 65536;

// The property names the hot paths read and write. Each lookup by a C string makes V8
// hash and internalize the name again; these are made once per Hsm and kept.
enum class Prop : uint8_t {
  kOp,
  kKey,
  kId,
  kCls,
  kToken,
  kIv,
  kCiphertext,
  kAad,
  kPlaintext,
  kData,
  kLength,
  kKeyBits,
  kSpec,
  kKind,
  kCurve,
  kModulusBits,
  kPublicSpec,
  kPrivateSpec,
  kHash,
  kMechanism,
  kWrappingKey,
  kUnwrappingKey,
  kAesKeyBits,
  kWrapped,
  kKeyType,
  kSignature,
  kLabel,
  kHandle,
  kAttrs,
  kUsage,
  kExtractable,
  kOk,
  kCode,
  kRv,
  kRetriable,
  kMessage,
  kBytes,
  kPublicHandle,
  kPrivateHandle,
  kValid,
  kHandles,
  kCount,
};
constexpr size_t kPropCount = static_cast<size_t>(Prop::kCount);
const char* PropName(Prop p);

// JS strings for every Prop, made once per Hsm and kept in one referenced array (Node-API 8
// cannot reference a string itself). JS thread only.
class PropKeys {
 public:
  explicit PropKeys(Napi::Env env);
  Napi::Array Names() const { return names_.Value().As<Napi::Array>(); }

 private:
  Napi::ObjectReference names_;
};

// The names used during one call into the addon: each reference is read at most once per
// call (napi_values live in the call's handle scope). Also remembers the last key ref
// parsed, so a batch whose ops share one KeyRef object parses it once.
class Props {
 public:
  // keys may be null (then names are made from their C strings as needed).
  Props(Napi::Env env, const PropKeys* keys) : env_(env), keys_(keys) {}
  Props(const Props&) = delete;
  Props& operator=(const Props&) = delete;
  Napi::Env env() const { return env_; }
  napi_value operator()(Prop p);

  napi_value last_key = nullptr;  // the JS object last_key_ref was parsed from
  KeyRef last_key_ref;

 private:
  Napi::Env env_;
  const PropKeys* keys_;
  napi_value names_ = nullptr;  // keys_->Names(), read on first use
  napi_value vals_[kPropCount] = {};
};

void ParseOp(Props& props, Napi::Value v, Op* op);  // throws Napi::TypeError / RangeError
void ParseKeyRef(Props& props, Napi::Value v, const char* field, KeyRef* out);
Napi::Value ResultToJs(Props& props, const Op& op, OpResult& r);  // zeroes secrets in r
Napi::Object ErrorToJs(Props& props, const OpError& e);
Napi::Object TokenToJs(Napi::Env env, const TokenSnapshot& snap);
Napi::Object ModuleInfoToJs(Napi::Env env, const CK_INFO& info);
Napi::Array MechanismsToJs(Napi::Env env, Module* m);
Napi::Object CountersToJs(Napi::Env env, const PoolCounters& c);
const char* MechanismName(CK_MECHANISM_TYPE t);
// `v` as an integer in [lo, hi] (lo and hi within ±2^53): TypeError if it is not a number,
// RangeError naming `field` and the range otherwise.
double IntegerValue(Napi::Env env, Napi::Value v, const char* field, double lo, double hi);
// Copies a PIN from a Buffer and zeroes the caller's Buffer.
void TakeSecret(Napi::Env env, Napi::Value v, const char* field, SecretBytes* out);

}  // namespace hyokd
