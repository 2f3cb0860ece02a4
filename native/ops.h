// One coarse HSM operation: its arguments (copied out of JS on the JS thread), its
// execution on one session (`*Init` and the call together, on a worker thread), and its
// result (copied back into JS on the JS thread). Workers never touch JS memory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "attrs.h"
#include "errors.h"
#include "p11.h"
#include "secure.h"

namespace hyokd {

enum class OpKind {
  kRandom,
  kGenerateKey,
  kGenerateKeyPair,
  kEncrypt,
  kDecrypt,
  kRsaEncrypt,
  kRsaDecrypt,
  kWrapKey,
  kUnwrapKey,
  kSign,
  kVerify,
  kFind,
  kGetAttributes,
  kSetAttributes,
  kCopyObject,
  kDestroy,
};
constexpr int kOpKindCount = static_cast<int>(OpKind::kDestroy) + 1;
const char* OpKindName(OpKind k);

// A key as hyokd names it: CKA_ID and class. Resolved to a handle by the pool's cache.
struct KeyRef {
  std::vector<uint8_t> id;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  bool token = true;  // session copies of token keys share the id: search by CKA_TOKEN too
  std::string CacheKey() const;
};

struct ObjectSpec {
  std::vector<uint8_t> id;
  std::string label;
  bool token = true;
  bool extractable = false;
  Usage usage;
};

struct Op {
  OpKind kind = OpKind::kRandom;
  KeyRef key;   // the key the op uses (for wrapKey: the wrapping key)
  KeyRef key2;  // wrapKey: the key being wrapped
  CK_OBJECT_HANDLE handle = 0;
  CK_MECHANISM_TYPE mechanism = 0;     // wrap/unwrap/sign mechanism
  CK_MECHANISM_TYPE hash = CKM_SHA_1;  // OAEP hash
  SecretBytes data;                    // plaintext, ciphertext, wrapped key, data to sign …
  std::vector<uint8_t> iv, aad, signature;
  CK_ULONG length = 0;  // random bytes; AES key bytes
  CK_ULONG modulus_bits = 3072;
  CK_ULONG aes_key_bits = 256;     // RSA_AES_KEY_WRAP ephemeral key
  bool ec = false;                 // generateKeyPair: EC P-256 instead of RSA
  CK_KEY_TYPE key_type = CKK_AES;  // unwrapKey: type of the key being imported
  ObjectSpec spec, spec2;          // generate*/unwrap: (public) spec; spec2: private spec
  // find
  std::optional<CK_OBJECT_CLASS> find_cls;
  std::optional<std::vector<uint8_t>> find_id;
  std::optional<std::string> find_label;
  // setAttributes / copyObject
  std::optional<std::string> set_label;
  std::optional<std::vector<uint8_t>> set_id;
  Usage set_usage;
  bool copy_token = false;

  // Whether the op reads the key through the pool's hot-key path (session copies).
  bool UsesHotKey() const { return kind == OpKind::kEncrypt || kind == OpKind::kDecrypt; }
};

struct OpResult {
  bool ok = false;
  OpError error;
  SecretBytes out;          // random bytes, plaintext, ciphertext, wrapped key, signature
  std::vector<uint8_t> iv;  // encrypt: the IV used
  CK_OBJECT_HANDLE h1 = 0, h2 = 0;
  std::vector<CK_OBJECT_HANDLE> handles;
  bool valid = false;
  ObjectAttributes attrs;

  void Reset();
};

// What an op needs from the pool while it runs.
class OpContext {
 public:
  virtual ~OpContext() = default;
  virtual CK_FUNCTION_LIST* fl() = 0;
  virtual CK_SESSION_HANDLE session() = 0;
  // Resolve a key to a handle (cached). On failure fills *err and returns false.
  virtual bool Resolve(const KeyRef& key, bool hot, CK_OBJECT_HANDLE* out, OpError* err) = 0;
  // Whether the module lists the mechanism.
  virtual bool HasMechanism(CK_MECHANISM_TYPE m) = 0;
};

// Runs the op on ctx's session. Returns CKR_OK, the failing CK_RV (with result->error
// set), or kHyokdFailure when result->error carries a HYOKD_* code.
constexpr CK_RV kHyokdFailure = CKR_VENDOR_DEFINED | 0x4859u;
CK_RV Execute(Op& op, OpContext& ctx, OpResult* result);

// Fills a template for a new object of class `cls` from its spec: token, label, id,
// sensitivity, and every usage flag of the class (false unless the spec grants it).
void AddSpec(Template* t, const ObjectSpec& spec, CK_OBJECT_CLASS cls);

}  // namespace hyokd
