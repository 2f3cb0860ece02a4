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

void ParseOp(Napi::Env env, Napi::Value v, Op* op);  // throws Napi::TypeError
void ParseKeyRef(Napi::Env env, Napi::Value v, const char* field, KeyRef* out);
Napi::Value ResultToJs(Napi::Env env, const Op& op, OpResult& r);  // zeroes secrets in r
Napi::Object ErrorToJs(Napi::Env env, const OpError& e);
Napi::Object TokenToJs(Napi::Env env, const TokenSnapshot& snap);
Napi::Object ModuleInfoToJs(Napi::Env env, const CK_INFO& info);
Napi::Array MechanismsToJs(Napi::Env env, Module* m);
Napi::Object CountersToJs(Napi::Env env, const PoolCounters& c);
const char* MechanismName(CK_MECHANISM_TYPE t);
// Copies a PIN from a Buffer and zeroes the caller's Buffer.
void TakeSecret(Napi::Env env, Napi::Value v, const char* field, SecretBytes* out);

}  // namespace hyokd
