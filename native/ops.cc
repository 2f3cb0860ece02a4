#include "ops.h"

#include <cstring>

namespace hyokd {

namespace {

constexpr size_t kGcmTagBytes = 16;
constexpr size_t kGcmIvBytes = 12;
// DER of the OID of NIST P-256 (1.2.840.10045.3.1.7), the value of CKA_EC_PARAMS.
constexpr uint8_t kP256Oid[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
constexpr uint8_t kRsaExponent[] = {0x01, 0x00, 0x01};

CK_RV Fail(OpResult* r, CK_RV rv, const char* what) {
  r->ok = false;
  r->error = OpError::FromRv(rv, what);
  return rv;
}

CK_RV FailHyokd(OpResult* r, const OpError& e) {
  r->ok = false;
  r->error = e;
  return kHyokdFailure;
}

CK_RV Ok(OpResult* r) {
  r->ok = true;
  return CKR_OK;
}

CK_RSA_PKCS_MGF_TYPE MgfFor(CK_MECHANISM_TYPE hash) {
  switch (hash) {
    case CKM_SHA256:
      return CKG_MGF1_SHA256;
    case CKM_SHA384:
      return CKG_MGF1_SHA384;
    default:
      return CKG_MGF1_SHA1;
  }
}

CK_RSA_PKCS_OAEP_PARAMS OaepParams(CK_MECHANISM_TYPE hash) {
  CK_RSA_PKCS_OAEP_PARAMS p{};
  p.hashAlg = hash;
  p.mgf = MgfFor(hash);
  p.source = CKZ_DATA_SPECIFIED;
  p.pSourceData = nullptr;
  p.ulSourceDataLen = 0;
  return p;
}

// Calls `call(buf, &len)` once with a pre-sized buffer; when the token says the buffer
// is too small, sizes it from the answer and calls again. PKCS#11 keeps the operation
// active after CKR_BUFFER_TOO_SMALL, so the second call continues it.
template <typename Call>
CK_RV CallSized(SecretBytes* out, size_t guess, Call call) {
  out->Resize(guess);
  CK_ULONG len = static_cast<CK_ULONG>(out->size());
  CK_RV rv = call(out->data(), &len);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    out->Resize(len);
    len = static_cast<CK_ULONG>(out->size());
    rv = call(out->data(), &len);
  }
  if (rv == CKR_OK) out->Resize(len);
  return rv;
}

CK_RV RunRandom(Op& op, OpContext& ctx, OpResult* r) {
  r->out.Resize(op.length);
  if (op.length == 0) return Ok(r);
  CK_RV rv = ctx.fl()->C_GenerateRandom(ctx.session(), r->out.data(), op.length);
  return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_GenerateRandom");
}

CK_RV RunGenerateKey(Op& op, OpContext& ctx, OpResult* r) {
  Template t;
  t.Ulong(CKA_CLASS, CKO_SECRET_KEY);
  t.Ulong(CKA_KEY_TYPE, CKK_AES);
  t.Ulong(CKA_VALUE_LEN, op.length);
  AddSpec(&t, op.spec, CKO_SECRET_KEY);
  CK_MECHANISM m{CKM_AES_KEY_GEN, nullptr, 0};
  CK_RV rv = ctx.fl()->C_GenerateKey(ctx.session(), &m, t.data(), t.size(), &r->h1);
  return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_GenerateKey");
}

CK_RV RunGenerateKeyPair(Op& op, OpContext& ctx, OpResult* r) {
  Template pub, priv;
  pub.Ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  priv.Ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  CK_MECHANISM m{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  if (op.ec) {
    m.mechanism = CKM_EC_KEY_PAIR_GEN;
    pub.Ulong(CKA_KEY_TYPE, CKK_EC);
    priv.Ulong(CKA_KEY_TYPE, CKK_EC);
    pub.Bytes(CKA_EC_PARAMS, kP256Oid, sizeof kP256Oid);
  } else {
    pub.Ulong(CKA_KEY_TYPE, CKK_RSA);
    priv.Ulong(CKA_KEY_TYPE, CKK_RSA);
    pub.Ulong(CKA_MODULUS_BITS, op.modulus_bits);
    pub.Bytes(CKA_PUBLIC_EXPONENT, kRsaExponent, sizeof kRsaExponent);
  }
  AddSpec(&pub, op.spec, CKO_PUBLIC_KEY);
  AddSpec(&priv, op.spec2, CKO_PRIVATE_KEY);
  CK_RV rv = ctx.fl()->C_GenerateKeyPair(ctx.session(), &m, pub.data(), pub.size(), priv.data(),
                                         priv.size(), &r->h1, &r->h2);
  return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_GenerateKeyPair");
}

CK_RV RunEncrypt(Op& op, OpContext& ctx, OpResult* r) {
  CK_OBJECT_HANDLE key;
  if (!ctx.Resolve(op.key, true, &key, &r->error)) return FailHyokd(r, r->error);
  CK_FUNCTION_LIST* fl = ctx.fl();
  CK_SESSION_HANDLE s = ctx.session();
  if (op.iv.empty()) {
    // The IV comes from the HSM's RNG: SoftHSM2 and most modules take a caller IV for
    // CKM_AES_GCM, so hyokd draws it from the token rather than from the host.
    r->iv.resize(kGcmIvBytes);
    CK_RV rv = fl->C_GenerateRandom(s, r->iv.data(), kGcmIvBytes);
    if (rv != CKR_OK) return Fail(r, rv, "C_GenerateRandom");
  } else {
    r->iv = op.iv;
  }
  CK_GCM_PARAMS p{};
  p.pIv = r->iv.data();
  p.ulIvLen = r->iv.size();
  p.ulIvBits = r->iv.size() * 8;
  p.pAAD = op.aad.empty() ? nullptr : op.aad.data();
  p.ulAADLen = op.aad.size();
  p.ulTagBits = kGcmTagBytes * 8;
  CK_MECHANISM m{CKM_AES_GCM, &p, sizeof p};
  CK_RV rv = fl->C_EncryptInit(s, &m, key);
  if (rv != CKR_OK) return Fail(r, rv, "C_EncryptInit");
  r->out.Resize(op.data.size() + kGcmTagBytes);
  CK_ULONG len = r->out.size();
  rv = fl->C_Encrypt(s, op.data.data(), op.data.size(), r->out.data(), &len);
  if (rv != CKR_OK) return Fail(r, rv, "C_Encrypt");
  r->out.Resize(len);
  return Ok(r);
}

CK_RV RunDecrypt(Op& op, OpContext& ctx, OpResult* r) {
  CK_OBJECT_HANDLE key;
  if (!ctx.Resolve(op.key, true, &key, &r->error)) return FailHyokd(r, r->error);
  CK_FUNCTION_LIST* fl = ctx.fl();
  CK_SESSION_HANDLE s = ctx.session();
  CK_GCM_PARAMS p{};
  p.pIv = op.iv.data();
  p.ulIvLen = op.iv.size();
  p.ulIvBits = op.iv.size() * 8;
  p.pAAD = op.aad.empty() ? nullptr : op.aad.data();
  p.ulAADLen = op.aad.size();
  p.ulTagBits = kGcmTagBytes * 8;
  CK_MECHANISM m{CKM_AES_GCM, &p, sizeof p};
  CK_RV rv = fl->C_DecryptInit(s, &m, key);
  if (rv != CKR_OK) return Fail(r, rv, "C_DecryptInit");
  // GCM plaintext is never longer than the input; pre-size once, no length query.
  r->out.Resize(op.data.size() == 0 ? 1 : op.data.size());
  CK_ULONG len = r->out.size();
  rv = fl->C_Decrypt(s, op.data.data(), op.data.size(), r->out.data(), &len);
  if (rv != CKR_OK) return Fail(r, rv, "C_Decrypt");
  r->out.Resize(len);
  return Ok(r);
}

CK_RV RunRsa(Op& op, OpContext& ctx, OpResult* r, bool encrypt) {
  CK_OBJECT_HANDLE key;
  if (!ctx.Resolve(op.key, false, &key, &r->error)) return FailHyokd(r, r->error);
  CK_FUNCTION_LIST* fl = ctx.fl();
  CK_SESSION_HANDLE s = ctx.session();
  CK_RSA_PKCS_OAEP_PARAMS p = OaepParams(op.hash);
  CK_MECHANISM m{CKM_RSA_PKCS_OAEP, &p, sizeof p};
  CK_RV rv = encrypt ? fl->C_EncryptInit(s, &m, key) : fl->C_DecryptInit(s, &m, key);
  if (rv != CKR_OK) return Fail(r, rv, encrypt ? "C_EncryptInit" : "C_DecryptInit");
  rv = CallSized(&r->out, 1024, [&](uint8_t* buf, CK_ULONG* len) {
    return encrypt ? fl->C_Encrypt(s, op.data.data(), op.data.size(), buf, len)
                   : fl->C_Decrypt(s, op.data.data(), op.data.size(), buf, len);
  });
  if (rv != CKR_OK) return Fail(r, rv, encrypt ? "C_Encrypt" : "C_Decrypt");
  return Ok(r);
}

CK_RV RunWrapKey(Op& op, OpContext& ctx, OpResult* r) {
  CK_OBJECT_HANDLE wrapping, target;
  if (!ctx.Resolve(op.key, false, &wrapping, &r->error)) return FailHyokd(r, r->error);
  if (!ctx.Resolve(op.key2, false, &target, &r->error)) return FailHyokd(r, r->error);
  CK_RSA_PKCS_OAEP_PARAMS oaep = OaepParams(op.hash);
  CK_MECHANISM m{op.mechanism, nullptr, 0};
  if (op.mechanism == CKM_RSA_PKCS_OAEP) {
    m.pParameter = &oaep;
    m.ulParameterLen = sizeof oaep;
  }
  CK_FUNCTION_LIST* fl = ctx.fl();
  CK_RV rv = CallSized(&r->out, 1024, [&](uint8_t* buf, CK_ULONG* len) {
    return fl->C_WrapKey(ctx.session(), &m, wrapping, target, buf, len);
  });
  return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_WrapKey");
}

void AddUnwrapTemplate(Template* t, const Op& op) {
  switch (op.key_type) {
    case CKK_AES:
      t->Ulong(CKA_CLASS, CKO_SECRET_KEY);
      t->Ulong(CKA_KEY_TYPE, CKK_AES);
      AddSpec(t, op.spec, CKO_SECRET_KEY);
      break;
    default:
      t->Ulong(CKA_CLASS, CKO_PRIVATE_KEY);
      t->Ulong(CKA_KEY_TYPE, op.key_type);
      AddSpec(t, op.spec, CKO_PRIVATE_KEY);
      break;
  }
}

// CKM_RSA_AES_KEY_WRAP done in two steps for modules that lack it (SoftHSM2 2.6.1): the
// blob is RSA-OAEP(ephemeral AES key) || AES-KWP(target key). The ephemeral key lives
// only as a sensitive session object and is destroyed before returning.
CK_RV RunRsaAesUnwrapTwoStep(Op& op, OpContext& ctx, OpResult* r, CK_OBJECT_HANDLE rsa) {
  CK_FUNCTION_LIST* fl = ctx.fl();
  CK_SESSION_HANDLE s = ctx.session();
  ObjectAttributes rsa_attrs;
  // The modulus length tells where the RSA part ends; read it from the public half.
  CK_ULONG modulus_bytes = 0;
  {
    CK_ULONG bits = 0;
    CK_ATTRIBUTE a{CKA_MODULUS, nullptr, 0};
    CK_RV rv = fl->C_GetAttributeValue(s, rsa, &a, 1);
    if (rv != CKR_OK) return Fail(r, rv, "C_GetAttributeValue(CKA_MODULUS)");
    modulus_bytes = a.ulValueLen;
    (void)bits;
  }
  if (modulus_bytes == 0 || op.data.size() <= modulus_bytes + 8) {
    return Fail(r, CKR_WRAPPED_KEY_LEN_RANGE, "RSA-AES unwrap");
  }
  Template eph;
  eph.Ulong(CKA_CLASS, CKO_SECRET_KEY);
  eph.Ulong(CKA_KEY_TYPE, CKK_AES);
  eph.Bool(CKA_TOKEN, false);
  eph.Bool(CKA_PRIVATE, true);
  eph.Bool(CKA_SENSITIVE, true);
  eph.Bool(CKA_EXTRACTABLE, false);
  eph.Bool(CKA_UNWRAP, true);
  CK_RSA_PKCS_OAEP_PARAMS oaep = OaepParams(op.hash);
  CK_MECHANISM m1{CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
  CK_OBJECT_HANDLE tmp = 0;
  CK_RV rv =
      fl->C_UnwrapKey(s, &m1, rsa, op.data.data(), modulus_bytes, eph.data(), eph.size(), &tmp);
  if (rv != CKR_OK) return Fail(r, rv, "C_UnwrapKey(RSA-OAEP)");
  Template t;
  AddUnwrapTemplate(&t, op);
  CK_MECHANISM m2{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  rv = fl->C_UnwrapKey(s, &m2, tmp, op.data.data() + modulus_bytes, op.data.size() - modulus_bytes,
                       t.data(), t.size(), &r->h1);
  CK_RV drv = fl->C_DestroyObject(s, tmp);
  if (rv != CKR_OK) return Fail(r, rv, "C_UnwrapKey(AES-KWP)");
  if (drv != CKR_OK) return Fail(r, drv, "C_DestroyObject");
  return Ok(r);
}

CK_RV RunUnwrapKey(Op& op, OpContext& ctx, OpResult* r) {
  CK_OBJECT_HANDLE unwrapping;
  if (!ctx.Resolve(op.key, false, &unwrapping, &r->error)) return FailHyokd(r, r->error);
  if (op.mechanism == CKM_RSA_AES_KEY_WRAP && !ctx.HasMechanism(CKM_RSA_AES_KEY_WRAP)) {
    return RunRsaAesUnwrapTwoStep(op, ctx, r, unwrapping);
  }
  CK_RSA_PKCS_OAEP_PARAMS oaep = OaepParams(op.hash);
  HyokdRsaAesKeyWrapParams rsa_aes{op.aes_key_bits, &oaep};
  CK_MECHANISM m{op.mechanism, nullptr, 0};
  if (op.mechanism == CKM_RSA_PKCS_OAEP) {
    m.pParameter = &oaep;
    m.ulParameterLen = sizeof oaep;
  } else if (op.mechanism == CKM_RSA_AES_KEY_WRAP) {
    m.pParameter = &rsa_aes;
    m.ulParameterLen = sizeof rsa_aes;
  }
  Template t;
  AddUnwrapTemplate(&t, op);
  CK_RV rv = ctx.fl()->C_UnwrapKey(ctx.session(), &m, unwrapping, op.data.data(), op.data.size(),
                                   t.data(), t.size(), &r->h1);
  return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_UnwrapKey");
}

CK_RV RunSignVerify(Op& op, OpContext& ctx, OpResult* r, bool sign) {
  CK_OBJECT_HANDLE key;
  if (!ctx.Resolve(op.key, false, &key, &r->error)) return FailHyokd(r, r->error);
  CK_RSA_PKCS_PSS_PARAMS pss{};
  CK_MECHANISM m{op.mechanism, nullptr, 0};
  if (op.mechanism == CKM_SHA256_RSA_PKCS_PSS || op.mechanism == CKM_SHA384_RSA_PKCS_PSS) {
    bool is384 = op.mechanism == CKM_SHA384_RSA_PKCS_PSS;
    pss.hashAlg = is384 ? CKM_SHA384 : CKM_SHA256;
    pss.mgf = is384 ? CKG_MGF1_SHA384 : CKG_MGF1_SHA256;
    pss.sLen = is384 ? 48 : 32;
    m.pParameter = &pss;
    m.ulParameterLen = sizeof pss;
  }
  CK_FUNCTION_LIST* fl = ctx.fl();
  CK_SESSION_HANDLE s = ctx.session();
  if (sign) {
    CK_RV rv = fl->C_SignInit(s, &m, key);
    if (rv != CKR_OK) return Fail(r, rv, "C_SignInit");
    rv = CallSized(&r->out, 512, [&](uint8_t* buf, CK_ULONG* len) {
      return fl->C_Sign(s, op.data.data(), op.data.size(), buf, len);
    });
    return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_Sign");
  }
  CK_RV rv = fl->C_VerifyInit(s, &m, key);
  if (rv != CKR_OK) return Fail(r, rv, "C_VerifyInit");
  rv = fl->C_Verify(s, op.data.data(), op.data.size(), op.signature.data(), op.signature.size());
  if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE) {
    r->valid = false;
    return Ok(r);
  }
  if (rv != CKR_OK) return Fail(r, rv, "C_Verify");
  r->valid = true;
  return Ok(r);
}

CK_RV RunFind(Op& op, OpContext& ctx, OpResult* r) {
  Template t;
  if (op.find_cls) t.Ulong(CKA_CLASS, *op.find_cls);
  if (op.find_id) t.Bytes(CKA_ID, op.find_id->data(), op.find_id->size());
  if (op.find_label) t.Text(CKA_LABEL, *op.find_label);
  CK_FUNCTION_LIST* fl = ctx.fl();
  CK_SESSION_HANDLE s = ctx.session();
  CK_RV rv = fl->C_FindObjectsInit(s, t.data(), t.size());
  if (rv != CKR_OK) return Fail(r, rv, "C_FindObjectsInit");
  CK_OBJECT_HANDLE batch[64];
  for (;;) {
    CK_ULONG n = 0;
    rv = fl->C_FindObjects(s, batch, 64, &n);
    if (rv != CKR_OK) {
      fl->C_FindObjectsFinal(s);
      return Fail(r, rv, "C_FindObjects");
    }
    r->handles.insert(r->handles.end(), batch, batch + n);
    if (n < 64) break;
  }
  rv = fl->C_FindObjectsFinal(s);
  return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_FindObjectsFinal");
}

CK_RV RunSetAttributes(Op& op, OpContext& ctx, OpResult* r) {
  Template t;
  if (op.set_label) t.Text(CKA_LABEL, *op.set_label);
  if (op.set_id) t.Bytes(CKA_ID, op.set_id->data(), op.set_id->size());
  t.AddUsage(op.set_usage);
  if (t.size() == 0) return Ok(r);
  CK_RV rv = ctx.fl()->C_SetAttributeValue(ctx.session(), op.handle, t.data(), t.size());
  return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_SetAttributeValue");
}

CK_RV RunCopyObject(Op& op, OpContext& ctx, OpResult* r) {
  Template t;
  t.Bool(CKA_TOKEN, op.copy_token);
  if (op.set_label) t.Text(CKA_LABEL, *op.set_label);
  CK_RV rv = ctx.fl()->C_CopyObject(ctx.session(), op.handle, t.data(), t.size(), &r->h1);
  return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_CopyObject");
}

}  // namespace

const char* OpKindName(OpKind k) {
  static const char* const names[kOpKindCount] = {
      "random",        "generateKey",   "generateKeyPair", "encrypt", "decrypt", "rsaEncrypt",
      "rsaDecrypt",    "wrapKey",       "unwrapKey",       "sign",    "verify",  "find",
      "getAttributes", "setAttributes", "copyObject",      "destroy"};
  return names[static_cast<int>(k)];
}

std::string KeyRef::CacheKey() const {
  std::string k(1, static_cast<char>('0' + static_cast<int>(cls)));
  k.push_back(token ? 'T' : 'S');
  k.append(reinterpret_cast<const char*>(id.data()), id.size());
  return k;
}

void OpResult::Reset() {
  ok = false;
  error = OpError();
  out.Clear();
  iv.clear();
  h1 = h2 = 0;
  handles.clear();
  valid = false;
  attrs = ObjectAttributes();
}

void AddSpec(Template* t, const ObjectSpec& spec, CK_OBJECT_CLASS cls) {
  t->Bool(CKA_TOKEN, spec.token);
  t->Text(CKA_LABEL, spec.label);
  t->Bytes(CKA_ID, spec.id.data(), spec.id.size());
  if (cls != CKO_PUBLIC_KEY) {
    t->Bool(CKA_PRIVATE, true);
    t->Bool(CKA_SENSITIVE, true);
    t->Bool(CKA_EXTRACTABLE, spec.extractable);
  }
  // Least privilege: every usage the object class can have is set, and what the spec
  // does not grant is false (tokens otherwise pick their own defaults; SoftHSM2 turns
  // sign and verify on for secret keys).
  Usage u = spec.usage;
  auto deny = [](int8_t* f) {
    if (*f < 0) *f = 0;
  };
  deny(&u.derive);
  if (cls != CKO_PRIVATE_KEY) {
    deny(&u.encrypt);
    deny(&u.verify);
    deny(&u.wrap);
  }
  if (cls != CKO_PUBLIC_KEY) {
    deny(&u.decrypt);
    deny(&u.sign);
    deny(&u.unwrap);
  }
  t->AddUsage(u);
}

CK_RV Execute(Op& op, OpContext& ctx, OpResult* r) {
  switch (op.kind) {
    case OpKind::kRandom:
      return RunRandom(op, ctx, r);
    case OpKind::kGenerateKey:
      return RunGenerateKey(op, ctx, r);
    case OpKind::kGenerateKeyPair:
      return RunGenerateKeyPair(op, ctx, r);
    case OpKind::kEncrypt:
      return RunEncrypt(op, ctx, r);
    case OpKind::kDecrypt:
      return RunDecrypt(op, ctx, r);
    case OpKind::kRsaEncrypt:
      return RunRsa(op, ctx, r, true);
    case OpKind::kRsaDecrypt:
      return RunRsa(op, ctx, r, false);
    case OpKind::kWrapKey:
      return RunWrapKey(op, ctx, r);
    case OpKind::kUnwrapKey:
      return RunUnwrapKey(op, ctx, r);
    case OpKind::kSign:
      return RunSignVerify(op, ctx, r, true);
    case OpKind::kVerify:
      return RunSignVerify(op, ctx, r, false);
    case OpKind::kFind:
      return RunFind(op, ctx, r);
    case OpKind::kGetAttributes: {
      CK_RV rv = ReadObjectAttributes(ctx.fl(), ctx.session(), op.handle, &r->attrs);
      return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_GetAttributeValue");
    }
    case OpKind::kSetAttributes:
      return RunSetAttributes(op, ctx, r);
    case OpKind::kCopyObject:
      return RunCopyObject(op, ctx, r);
    case OpKind::kDestroy: {
      CK_RV rv = ctx.fl()->C_DestroyObject(ctx.session(), op.handle);
      return rv == CKR_OK ? Ok(r) : Fail(r, rv, "C_DestroyObject");
    }
  }
  return Fail(r, CKR_FUNCTION_NOT_SUPPORTED, "unknown op");
}

}  // namespace hyokd
