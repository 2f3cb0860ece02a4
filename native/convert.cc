#include "convert.h"

#include <cstring>
#include <string>

#include "ckr_table.h"

namespace hyokd {

namespace {

const char* const kPropNames[] = {"op",
                                  "key",
                                  "id",
                                  "cls",
                                  "token",
                                  "iv",
                                  "ciphertext",
                                  "aad",
                                  "plaintext",
                                  "data",
                                  "length",
                                  "keyBits",
                                  "spec",
                                  "kind",
                                  "curve",
                                  "modulusBits",
                                  "publicSpec",
                                  "privateSpec",
                                  "hash",
                                  "mechanism",
                                  "wrappingKey",
                                  "unwrappingKey",
                                  "aesKeyBits",
                                  "wrapped",
                                  "keyType",
                                  "signature",
                                  "label",
                                  "handle",
                                  "attrs",
                                  "usage",
                                  "extractable",
                                  "ok",
                                  "code",
                                  "rv",
                                  "retriable",
                                  "message",
                                  "bytes",
                                  "publicHandle",
                                  "privateHandle",
                                  "valid",
                                  "handles"};
static_assert(sizeof kPropNames / sizeof kPropNames[0] == kPropCount, "one name per Prop");

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

// One napi_typeof per value: the Napi::Value::Is* helpers each make their own call.
napi_valuetype TypeOf(Napi::Value v) {
  napi_valuetype t;
  if (napi_typeof(v.Env(), v, &t) != napi_ok) return napi_undefined;
  return t;
}

bool Absent(napi_valuetype t) { return t == napi_undefined || t == napi_null; }

Napi::Value Get(Props& P, Napi::Object o, Prop k) { return o.Get(P(k)); }

Napi::Object AsObject(Napi::Env env, Napi::Value v, const char* what) {
  napi_valuetype t = TypeOf(v);
  if ((t != napi_object && t != napi_function) || v.IsArray() || v.IsTypedArray() || v.IsBuffer()) {
    ThrowType(env, std::string(what) + " must be an object");
  }
  return v.As<Napi::Object>();
}

bool Has(Props& P, Napi::Object o, Prop k) { return !Absent(TypeOf(Get(P, o, k))); }

// A Uint8Array (Buffer) view of at most `max` bytes. One call both checks the type and
// reads the view (napi_get_typedarray_info fails, without throwing, on anything else).
bool TryBytes(Napi::Env env, Napi::Value v, const char* field, size_t max, uint8_t** data,
              size_t* len) {
  napi_typedarray_type type;
  size_t n = 0;
  void* p = nullptr;
  if (napi_get_typedarray_info(env, v, &type, &n, &p, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    return false;
  }
  if (n > max) {
    throw Napi::RangeError::New(
        env, std::string(field) + " is longer than " + std::to_string(max) + " bytes");
  }
  *data = static_cast<uint8_t*>(p);
  *len = n;
  return true;
}

void Bytes(Napi::Env env, Napi::Value v, const char* field, size_t max, uint8_t** data,
           size_t* len) {
  if (!TryBytes(env, v, field, max, data, len)) {
    ThrowType(env, std::string(field) + " must be a Buffer or Uint8Array");
  }
}

// Reads a Buffer property; its type is looked at only when it is not a Uint8Array.
// Returns false when the property is absent and not required.
bool PropBytes(Props& P, Napi::Object o, Prop k, size_t max, bool required, uint8_t** data,
               size_t* len) {
  const char* field = PropName(k);
  Napi::Value v = Get(P, o, k);
  if (TryBytes(P.env(), v, field, max, data, len)) return true;
  if (Absent(TypeOf(v))) {
    if (required) ThrowType(P.env(), std::string(field) + " is required");
    return false;
  }
  ThrowType(P.env(), std::string(field) + " must be a Buffer or Uint8Array");
}

std::vector<uint8_t> GetBytes(Props& P, Napi::Object o, Prop k, size_t max, bool required = true) {
  uint8_t* p;
  size_t n;
  if (!PropBytes(P, o, k, max, required, &p, &n)) return {};
  return std::vector<uint8_t>(p, p + n);
}

void GetSecretBytes(Props& P, Napi::Object o, Prop k, SecretBytes* out) {
  uint8_t* p;
  size_t n;
  PropBytes(P, o, k, kMaxDataBytes, true, &p, &n);
  out->Assign(p, n);
}

// Copies a string of at most `max` UTF-8 bytes in one call. The buffer has 8 bytes of
// slack: V8 stops copying only when the next character (at most 4 bytes) does not fit,
// so a longer string always fills more than `max` bytes and is caught.
std::string GetString(Props& P, Napi::Object o, Prop k, size_t max, bool required = true) {
  Napi::Env env = P.env();
  const char* field = PropName(k);
  Napi::Value v = Get(P, o, k);
  napi_valuetype t = TypeOf(v);
  if (Absent(t)) {
    if (required) ThrowType(env, std::string(field) + " is required");
    return {};
  }
  if (t != napi_string) ThrowType(env, std::string(field) + " must be a string");
  char stack[64];
  std::vector<char> heap;
  char* buf = stack;
  size_t cap = max + 8;
  if (cap > sizeof stack) {
    heap.resize(cap);
    buf = heap.data();
  }
  size_t n = 0;
  napi_status st = napi_get_value_string_utf8(env, v, buf, cap, &n);
  if (st != napi_ok) throw Napi::Error::New(env);
  if (n > max) {
    throw Napi::RangeError::New(
        env, std::string(field) + " is longer than " + std::to_string(max) + " bytes");
  }
  return std::string(buf, n);
}

double GetNumber(Props& P, Napi::Object o, Prop k, double lo, double hi, double dflt,
                 bool required) {
  Napi::Env env = P.env();
  const char* field = PropName(k);
  Napi::Value v = Get(P, o, k);
  napi_valuetype t = TypeOf(v);
  if (Absent(t)) {
    if (required) ThrowType(env, std::string(field) + " is required");
    return dflt;
  }
  return IntegerValue(env, v, field, lo, hi);
}

bool GetBool(Props& P, Napi::Object o, Prop k, bool dflt) {
  Napi::Value v = Get(P, o, k);
  napi_valuetype t = TypeOf(v);
  if (Absent(t)) return dflt;
  if (t != napi_boolean) ThrowType(P.env(), std::string(PropName(k)) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

CK_OBJECT_CLASS ParseClass(Napi::Env env, const std::string& s, const char* field) {
  if (s == "secret") return CKO_SECRET_KEY;
  if (s == "private") return CKO_PRIVATE_KEY;
  if (s == "public") return CKO_PUBLIC_KEY;
  ThrowType(env, std::string(field) + " must be 'secret', 'private' or 'public'");
}

CK_MECHANISM_TYPE ParseHash(Props& P, Napi::Object o) {
  std::string h = GetString(P, o, Prop::kHash, 16, false);
  if (h.empty() || h == "sha1") return CKM_SHA_1;
  if (h == "sha256") return CKM_SHA256;
  ThrowType(P.env(), "hash must be 'sha1' or 'sha256'");
}

void ParseUsage(Napi::Env env, Napi::Value v, Usage* u) {
  Napi::Object o = AsObject(env, v, "usage");
  const struct {
    const char* k;
    int8_t* f;
  } flags[] = {{"encrypt", &u->encrypt}, {"decrypt", &u->decrypt}, {"wrap", &u->wrap},
               {"unwrap", &u->unwrap},   {"sign", &u->sign},       {"verify", &u->verify},
               {"derive", &u->derive}};
  for (const auto& f : flags) {
    Napi::Value x = o.Get(f.k);
    if (x.IsUndefined() || x.IsNull()) continue;
    if (!x.IsBoolean()) ThrowType(env, std::string("usage.") + f.k + " must be a boolean");
    *f.f = x.As<Napi::Boolean>().Value() ? 1 : 0;
  }
}

void ParseSpec(Props& P, Napi::Value v, const char* field, ObjectSpec* s) {
  Napi::Env env = P.env();
  Napi::Object o = AsObject(env, v, field);
  s->id = GetBytes(P, o, Prop::kId, kMaxSmallBytes);
  s->label = GetString(P, o, Prop::kLabel, kMaxLabelBytes);
  s->token = GetBool(P, o, Prop::kToken, true);
  s->extractable = GetBool(P, o, Prop::kExtractable, false);
  if (!Has(P, o, Prop::kUsage)) ThrowType(env, std::string(field) + ".usage is required");
  ParseUsage(env, Get(P, o, Prop::kUsage), &s->usage);
}

CK_OBJECT_HANDLE GetHandle(Props& P, Napi::Object o) {
  return static_cast<CK_OBJECT_HANDLE>(
      GetNumber(P, o, Prop::kHandle, 1, 9007199254740991.0, 0, true));
}

Napi::Value HandleToJs(Napi::Env env, CK_OBJECT_HANDLE h) {
  return Napi::Number::New(env, static_cast<double>(h));
}

Napi::Buffer<uint8_t> CopyOut(Napi::Env env, const uint8_t* p, size_t n) {
  return Napi::Buffer<uint8_t>::Copy(env, n == 0 ? reinterpret_cast<const uint8_t*>("") : p, n);
}

std::string Version(const CK_VERSION& v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor);
}

const char* ClassName(CK_OBJECT_CLASS c) {
  switch (c) {
    case CKO_SECRET_KEY:
      return "secret";
    case CKO_PRIVATE_KEY:
      return "private";
    case CKO_PUBLIC_KEY:
      return "public";
    default:
      return "other";
  }
}

const char* KeyTypeName(CK_KEY_TYPE k) {
  switch (k) {
    case CKK_AES:
      return "aes";
    case CKK_RSA:
      return "rsa";
    case CKK_EC:
      return "ec";
    case CKK_GENERIC_SECRET:
      return "generic";
    default:
      return "other";
  }
}

CK_MECHANISM_TYPE ParseWrapMechanism(Props& P, Napi::Object o, bool unwrap) {
  static const struct {
    const char* name;
    CK_MECHANISM_TYPE type;
    bool unwrap_only;
  } kMechs[] = {{"AES_KEY_WRAP", CKM_AES_KEY_WRAP, false},
                {"AES_KEY_WRAP_PAD", CKM_AES_KEY_WRAP_PAD, false},
                {"RSA_PKCS_OAEP", CKM_RSA_PKCS_OAEP, false},
                {"RSA_AES_KEY_WRAP", CKM_RSA_AES_KEY_WRAP, true}};
  std::string m = GetString(P, o, Prop::kMechanism, 32);
  std::string names;
  for (const auto& k : kMechs) {
    if (k.unwrap_only && !unwrap) continue;
    if (m == k.name) return k.type;
    names += names.empty() ? k.name : std::string(", ") + k.name;
  }
  ThrowType(P.env(), "mechanism must be one of " + names);
}

}  // namespace

double IntegerValue(Napi::Env env, Napi::Value v, const char* field, double lo, double hi) {
  if (!v.IsNumber()) ThrowType(env, std::string(field) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::RangeError::New(env, std::string(field) + " must be an integer in [" +
                                         std::to_string(static_cast<int64_t>(lo)) + ", " +
                                         std::to_string(static_cast<int64_t>(hi)) + "]");
  }
  return d;
}

const char* MechanismName(CK_MECHANISM_TYPE t) {
  for (const auto& row : kCkmTable) {
    if (row.type == t) return row.name;
  }
  return nullptr;
}

const char* PropName(Prop p) { return kPropNames[static_cast<size_t>(p)]; }

PropKeys::PropKeys(Napi::Env env) {
  Napi::Array a = Napi::Array::New(env, kPropCount);
  for (uint32_t i = 0; i < kPropCount; i++) a.Set(i, Napi::String::New(env, kPropNames[i]));
  names_ = Napi::Persistent(static_cast<Napi::Object>(a));
}

napi_value Props::operator()(Prop p) {
  size_t i = static_cast<size_t>(p);
  napi_value& v = vals_[i];
  if (v == nullptr) {
    if (keys_ == nullptr) {
      v = Napi::String::New(env_, kPropNames[i]);
    } else {
      if (names_ == nullptr) names_ = keys_->Names();
      v = Napi::Array(env_, names_).Get(static_cast<uint32_t>(i));
    }
  }
  return v;
}

void TakeSecret(Napi::Env env, Napi::Value v, const char* field, SecretBytes* out) {
  uint8_t* p;
  size_t n;
  Bytes(env, v, field, kMaxSmallBytes, &p, &n);
  out->Assign(p, n);
  SecureZero(p, n);
}

void ParseKeyRef(Props& P, Napi::Value v, const char* field, KeyRef* out) {
  Napi::Env env = P.env();
  // Every op of a batch usually names the same KeyRef object (the KEK's): parse it once.
  // Nothing runs between the ops of one submit except property getters, so the copy is
  // what a fresh parse would read from a plain object.
  if (P.last_key != nullptr) {
    bool same = false;
    if (napi_strict_equals(env, P.last_key, v, &same) == napi_ok && same) {
      *out = P.last_key_ref;
      return;
    }
  }
  Napi::Object o = AsObject(env, v, field);
  out->id = GetBytes(P, o, Prop::kId, kMaxSmallBytes);
  if (out->id.empty()) ThrowType(env, std::string(field) + ".id must not be empty");
  out->cls = ParseClass(env, GetString(P, o, Prop::kCls, 16), "cls");
  out->token = GetBool(P, o, Prop::kToken, true);
  P.last_key = v;
  P.last_key_ref = *out;
}

void ParseOp(Props& P, Napi::Value v, Op* op) {
  Napi::Env env = P.env();
  Napi::Object o = AsObject(env, v, "op");
  std::string kind = GetString(P, o, Prop::kOp, 32);
  if (kind == "random") {
    op->kind = OpKind::kRandom;
    op->length = static_cast<CK_ULONG>(GetNumber(P, o, Prop::kLength, 0, kMaxRandomBytes, 0, true));
  } else if (kind == "generateKey") {
    op->kind = OpKind::kGenerateKey;
    double bits = GetNumber(P, o, Prop::kKeyBits, 128, 256, 256, false);
    if (bits != 128 && bits != 192 && bits != 256) {
      throw Napi::RangeError::New(env, "keyBits must be 128, 192 or 256");
    }
    op->length = static_cast<CK_ULONG>(bits / 8);
    ParseSpec(P, Get(P, o, Prop::kSpec), "spec", &op->spec);
  } else if (kind == "generateKeyPair") {
    op->kind = OpKind::kGenerateKeyPair;
    std::string k = GetString(P, o, Prop::kKind, 8);
    if (k == "ec") {
      op->ec = true;
      std::string curve = GetString(P, o, Prop::kCurve, 16, false);
      if (!curve.empty() && curve != "P-256") ThrowType(env, "curve must be 'P-256'");
    } else if (k == "rsa") {
      op->modulus_bits =
          static_cast<CK_ULONG>(GetNumber(P, o, Prop::kModulusBits, 2048, 8192, 3072, false));
    } else {
      ThrowType(env, "kind must be 'rsa' or 'ec'");
    }
    ParseSpec(P, Get(P, o, Prop::kPublicSpec), "publicSpec", &op->spec);
    ParseSpec(P, Get(P, o, Prop::kPrivateSpec), "privateSpec", &op->spec2);
  } else if (kind == "encrypt") {
    op->kind = OpKind::kEncrypt;
    ParseKeyRef(P, Get(P, o, Prop::kKey), "key", &op->key);
    GetSecretBytes(P, o, Prop::kPlaintext, &op->data);
    op->aad = GetBytes(P, o, Prop::kAad, kMaxDataBytes, false);
    op->iv = GetBytes(P, o, Prop::kIv, 128, false);
    if (op->iv.empty() && Has(P, o, Prop::kIv)) ThrowType(env, "iv must not be empty");
  } else if (kind == "decrypt") {
    op->kind = OpKind::kDecrypt;
    ParseKeyRef(P, Get(P, o, Prop::kKey), "key", &op->key);
    op->iv = GetBytes(P, o, Prop::kIv, 128);
    if (op->iv.empty()) ThrowType(env, "iv must not be empty");
    GetSecretBytes(P, o, Prop::kCiphertext, &op->data);
    op->aad = GetBytes(P, o, Prop::kAad, kMaxDataBytes, false);
  } else if (kind == "rsaEncrypt" || kind == "rsaDecrypt") {
    op->kind = kind == "rsaEncrypt" ? OpKind::kRsaEncrypt : OpKind::kRsaDecrypt;
    ParseKeyRef(P, Get(P, o, Prop::kKey), "key", &op->key);
    op->hash = ParseHash(P, o);
    GetSecretBytes(P, o, Prop::kData, &op->data);
  } else if (kind == "wrapKey") {
    op->kind = OpKind::kWrapKey;
    op->mechanism = ParseWrapMechanism(P, o, false);
    op->hash = ParseHash(P, o);
    ParseKeyRef(P, Get(P, o, Prop::kWrappingKey), "wrappingKey", &op->key);
    ParseKeyRef(P, Get(P, o, Prop::kKey), "key", &op->key2);
  } else if (kind == "unwrapKey") {
    op->kind = OpKind::kUnwrapKey;
    op->mechanism = ParseWrapMechanism(P, o, true);
    op->hash = ParseHash(P, o);
    op->aes_key_bits =
        static_cast<CK_ULONG>(GetNumber(P, o, Prop::kAesKeyBits, 128, 256, 256, false));
    ParseKeyRef(P, Get(P, o, Prop::kUnwrappingKey), "unwrappingKey", &op->key);
    GetSecretBytes(P, o, Prop::kWrapped, &op->data);
    std::string kt = GetString(P, o, Prop::kKeyType, 8);
    if (kt == "aes") {
      op->key_type = CKK_AES;
    } else if (kt == "rsa") {
      op->key_type = CKK_RSA;
    } else if (kt == "ec") {
      op->key_type = CKK_EC;
    } else {
      ThrowType(env, "keyType must be 'aes', 'rsa' or 'ec'");
    }
    ParseSpec(P, Get(P, o, Prop::kSpec), "spec", &op->spec);
  } else if (kind == "sign" || kind == "verify") {
    op->kind = kind == "sign" ? OpKind::kSign : OpKind::kVerify;
    ParseKeyRef(P, Get(P, o, Prop::kKey), "key", &op->key);
    std::string m = GetString(P, o, Prop::kMechanism, 32);
    if (m == "ECDSA") {
      op->mechanism = CKM_ECDSA;
    } else if (m == "SHA256_RSA_PKCS_PSS") {
      op->mechanism = CKM_SHA256_RSA_PKCS_PSS;
    } else if (m == "SHA384_RSA_PKCS_PSS") {
      op->mechanism = CKM_SHA384_RSA_PKCS_PSS;
    } else {
      ThrowType(env, "mechanism must be ECDSA, SHA256_RSA_PKCS_PSS or SHA384_RSA_PKCS_PSS");
    }
    GetSecretBytes(P, o, Prop::kData, &op->data);
    if (op->kind == OpKind::kVerify) {
      op->signature = GetBytes(P, o, Prop::kSignature, kMaxSmallBytes);
    }
  } else if (kind == "find") {
    op->kind = OpKind::kFind;
    if (Has(P, o, Prop::kCls)) {
      op->find_cls = ParseClass(env, GetString(P, o, Prop::kCls, 16), "cls");
    }
    if (Has(P, o, Prop::kId)) op->find_id = GetBytes(P, o, Prop::kId, kMaxSmallBytes);
    if (Has(P, o, Prop::kLabel)) op->find_label = GetString(P, o, Prop::kLabel, kMaxLabelBytes);
  } else if (kind == "getAttributes" || kind == "destroy") {
    op->kind = kind == "destroy" ? OpKind::kDestroy : OpKind::kGetAttributes;
    op->handle = GetHandle(P, o);
  } else if (kind == "setAttributes") {
    op->kind = OpKind::kSetAttributes;
    op->handle = GetHandle(P, o);
    Napi::Object a = AsObject(env, Get(P, o, Prop::kAttrs), "attrs");
    if (Has(P, a, Prop::kLabel)) op->set_label = GetString(P, a, Prop::kLabel, kMaxLabelBytes);
    if (Has(P, a, Prop::kId)) op->set_id = GetBytes(P, a, Prop::kId, kMaxSmallBytes);
    if (Has(P, a, Prop::kUsage)) ParseUsage(env, Get(P, a, Prop::kUsage), &op->set_usage);
  } else if (kind == "copyObject") {
    op->kind = OpKind::kCopyObject;
    op->handle = GetHandle(P, o);
    Napi::Value t = Get(P, o, Prop::kToken);
    if (TypeOf(t) != napi_boolean) ThrowType(env, "token must be a boolean");
    op->copy_token = t.As<Napi::Boolean>().Value();
    if (Has(P, o, Prop::kLabel)) op->set_label = GetString(P, o, Prop::kLabel, kMaxLabelBytes);
  } else {
    ThrowType(env, "unknown op '" + kind.substr(0, 32) + "'");
  }
}

Napi::Object ErrorToJs(Props& P, const OpError& e) {
  Napi::Env env = P.env();
  Napi::Object o = Napi::Object::New(env);
  o.Set(P(Prop::kOk), Napi::Boolean::New(env, false));
  o.Set(P(Prop::kCode), Napi::String::New(env, e.code));
  o.Set(P(Prop::kRv), Napi::Number::New(env, static_cast<double>(e.rv)));
  o.Set(P(Prop::kRetriable), Napi::Boolean::New(env, e.retriable));
  o.Set(P(Prop::kMessage), Napi::String::New(env, e.message));
  return o;
}

Napi::Value ResultToJs(Props& P, const Op& op, OpResult& r) {
  Napi::Env env = P.env();
  if (!r.ok) {
    Napi::Object e = ErrorToJs(P, r.error);
    e.Set(P(Prop::kOp), Napi::String::New(env, OpKindName(op.kind)));
    return e;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set(P(Prop::kOk), Napi::Boolean::New(env, true));
  switch (op.kind) {
    case OpKind::kRandom:
      o.Set(P(Prop::kBytes), CopyOut(env, r.out.data(), r.out.size()));
      break;
    case OpKind::kGenerateKey:
    case OpKind::kUnwrapKey:
    case OpKind::kCopyObject:
      o.Set(P(Prop::kHandle), HandleToJs(env, r.h1));
      break;
    case OpKind::kGenerateKeyPair:
      o.Set(P(Prop::kPublicHandle), HandleToJs(env, r.h1));
      o.Set(P(Prop::kPrivateHandle), HandleToJs(env, r.h2));
      break;
    case OpKind::kEncrypt:
      o.Set(P(Prop::kIv), CopyOut(env, r.iv.data(), r.iv.size()));
      o.Set(P(Prop::kCiphertext), CopyOut(env, r.out.data(), r.out.size()));
      break;
    case OpKind::kDecrypt:
      o.Set(P(Prop::kPlaintext), CopyOut(env, r.out.data(), r.out.size()));
      break;
    case OpKind::kRsaEncrypt:
    case OpKind::kRsaDecrypt:
      o.Set(P(Prop::kData), CopyOut(env, r.out.data(), r.out.size()));
      break;
    case OpKind::kWrapKey:
      o.Set(P(Prop::kWrapped), CopyOut(env, r.out.data(), r.out.size()));
      break;
    case OpKind::kSign:
      o.Set(P(Prop::kSignature), CopyOut(env, r.out.data(), r.out.size()));
      break;
    case OpKind::kVerify:
      o.Set(P(Prop::kValid), Napi::Boolean::New(env, r.valid));
      break;
    case OpKind::kFind: {
      Napi::Array a = Napi::Array::New(env, r.handles.size());
      for (size_t i = 0; i < r.handles.size(); i++) a.Set(i, HandleToJs(env, r.handles[i]));
      o.Set(P(Prop::kHandles), a);
      break;
    }
    case OpKind::kGetAttributes: {
      const ObjectAttributes& at = r.attrs;
      Napi::Object x = Napi::Object::New(env);
      x.Set("handle", HandleToJs(env, at.handle));
      x.Set("cls", ClassName(at.cls));
      x.Set("keyType", KeyTypeName(at.key_type));
      x.Set("id", CopyOut(env, at.id.data(), at.id.size()));
      x.Set("label", at.label);
      x.Set("token", at.token);
      x.Set("sensitive", at.sensitive);
      x.Set("extractable", at.extractable);
      x.Set("alwaysSensitive", at.always_sensitive);
      x.Set("neverExtractable", at.never_extractable);
      x.Set("local", at.local);
      Napi::Object u = Napi::Object::New(env);
      u.Set("encrypt", at.encrypt);
      u.Set("decrypt", at.decrypt);
      u.Set("wrap", at.wrap);
      u.Set("unwrap", at.unwrap);
      u.Set("sign", at.sign);
      u.Set("verify", at.verify);
      u.Set("derive", at.derive);
      x.Set("usage", u);
      if (at.has_value_len)
        x.Set("valueLen", Napi::Number::New(env, static_cast<double>(at.value_len)));
      if (!at.modulus.empty()) x.Set("modulus", CopyOut(env, at.modulus.data(), at.modulus.size()));
      if (!at.public_exponent.empty()) {
        x.Set("publicExponent", CopyOut(env, at.public_exponent.data(), at.public_exponent.size()));
      }
      if (!at.ec_point.empty())
        x.Set("ecPoint", CopyOut(env, at.ec_point.data(), at.ec_point.size()));
      if (!at.ec_params.empty())
        x.Set("ecParams", CopyOut(env, at.ec_params.data(), at.ec_params.size()));
      o.Set(P(Prop::kAttrs), x);
      break;
    }
    case OpKind::kSetAttributes:
    case OpKind::kDestroy:
      break;
  }
  r.out.Clear();  // plaintext and key bytes leave native memory once copied out
  return o;
}

Napi::Object ModuleInfoToJs(Napi::Env env, const CK_INFO& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("cryptokiVersion", Version(info.cryptokiVersion));
  o.Set("manufacturerId", TrimPadded(info.manufacturerID, sizeof info.manufacturerID));
  o.Set("libraryDescription", TrimPadded(info.libraryDescription, sizeof info.libraryDescription));
  o.Set("libraryVersion", Version(info.libraryVersion));
  return o;
}

Napi::Object TokenToJs(Napi::Env env, const TokenSnapshot& snap) {
  const CK_TOKEN_INFO& t = snap.token;
  auto count = [&](CK_ULONG v) -> Napi::Value {
    if (v == CK_UNAVAILABLE_INFORMATION || v == CK_EFFECTIVELY_INFINITE) return env.Null();
    return Napi::Number::New(env, static_cast<double>(v));
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("slotId", Napi::Number::New(env, static_cast<double>(snap.slot)));
  o.Set("label", TrimPadded(t.label, sizeof t.label));
  o.Set("manufacturerId", TrimPadded(t.manufacturerID, sizeof t.manufacturerID));
  o.Set("model", TrimPadded(t.model, sizeof t.model));
  o.Set("serialNumber", TrimPadded(t.serialNumber, sizeof t.serialNumber));
  o.Set("maxSessionCount", count(t.ulMaxSessionCount));
  o.Set("sessionCount", count(t.ulSessionCount));
  o.Set("maxRwSessionCount", count(t.ulMaxRwSessionCount));
  o.Set("rwSessionCount", count(t.ulRwSessionCount));
  Napi::Object f = Napi::Object::New(env);
  f.Set("loginRequired", (t.flags & CKF_LOGIN_REQUIRED) != 0);
  f.Set("userPinInitialized", (t.flags & CKF_USER_PIN_INITIALIZED) != 0);
  f.Set("tokenInitialized", (t.flags & CKF_TOKEN_INITIALIZED) != 0);
  f.Set("rng", (t.flags & CKF_RNG) != 0);
  o.Set("flags", f);
  return o;
}

Napi::Array MechanismsToJs(Napi::Env env, Module* m) {
  const auto& mechs = m->mechanisms();
  Napi::Array a = Napi::Array::New(env);
  uint32_t i = 0;
  for (CK_MECHANISM_TYPE t : mechs) {
    CK_MECHANISM_INFO info{};
    if (m->MechanismInfo(t, &info) != CKR_OK) continue;
    Napi::Object o = Napi::Object::New(env);
    const char* name = MechanismName(t);
    char hex[32];
    snprintf(hex, sizeof hex, "0x%lX", static_cast<unsigned long>(t));
    o.Set("name", name ? std::string(name) : std::string("CKM_") + hex);
    o.Set("type", Napi::Number::New(env, static_cast<double>(t)));
    o.Set("minKeySize", Napi::Number::New(env, static_cast<double>(info.ulMinKeySize)));
    o.Set("maxKeySize", Napi::Number::New(env, static_cast<double>(info.ulMaxKeySize)));
    Napi::Object f = Napi::Object::New(env);
    f.Set("encrypt", (info.flags & CKF_ENCRYPT) != 0);
    f.Set("decrypt", (info.flags & CKF_DECRYPT) != 0);
    f.Set("digest", (info.flags & CKF_DIGEST) != 0);
    f.Set("sign", (info.flags & CKF_SIGN) != 0);
    f.Set("verify", (info.flags & CKF_VERIFY) != 0);
    f.Set("generate", (info.flags & CKF_GENERATE) != 0);
    f.Set("generateKeyPair", (info.flags & CKF_GENERATE_KEY_PAIR) != 0);
    f.Set("wrap", (info.flags & CKF_WRAP) != 0);
    f.Set("unwrap", (info.flags & CKF_UNWRAP) != 0);
    f.Set("derive", (info.flags & CKF_DERIVE) != 0);
    o.Set("flags", f);
    a.Set(i++, o);
  }
  return a;
}

Napi::Object CountersToJs(Napi::Env env, const PoolCounters& c) {
  static const char* const states[] = {"ready", "recovering", "closing", "closed"};
  Napi::Object o = Napi::Object::New(env);
  o.Set("state", states[static_cast<int>(c.state)]);
  o.Set("queueDepth", Napi::Number::New(env, static_cast<double>(c.queue_depth)));
  o.Set("queueCapacity", Napi::Number::New(env, static_cast<double>(c.queue_capacity)));
  o.Set("sessionsTotal", Napi::Number::New(env, static_cast<double>(c.sessions)));
  o.Set("sessionsBusy", Napi::Number::New(env, static_cast<double>(c.busy)));
  o.Set("sessionsIdle", Napi::Number::New(env, static_cast<double>(c.sessions - c.busy)));
  Napi::Object ops = Napi::Object::New(env);
  for (int i = 0; i < kOpKindCount; i++) {
    ops.Set(OpKindName(static_cast<OpKind>(i)),
            Napi::Number::New(env, static_cast<double>(c.ops[i])));
  }
  o.Set("ops", ops);
  Napi::Object errs = Napi::Object::New(env);
  for (const auto& kv : c.errors)
    errs.Set(kv.first, Napi::Number::New(env, static_cast<double>(kv.second)));
  o.Set("errors", errs);
  o.Set("reinitializations", Napi::Number::New(env, static_cast<double>(c.reinits)));
  o.Set("sessionReopens", Napi::Number::New(env, static_cast<double>(c.session_reopens)));
  o.Set("relogins", Napi::Number::New(env, static_cast<double>(c.relogins)));
  o.Set("handleResolves", Napi::Number::New(env, static_cast<double>(c.handle_resolves)));
  o.Set("sessionCopiesDropped", Napi::Number::New(env, static_cast<double>(c.copies_dropped)));
  o.Set("rejectedQueueFull", Napi::Number::New(env, static_cast<double>(c.rejected_queue_full)));
  return o;
}

}  // namespace hyokd
