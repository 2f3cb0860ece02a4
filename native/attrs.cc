#include "attrs.h"

namespace hyokd {

bool Usage::Any() const {
  return encrypt >= 0 || decrypt >= 0 || wrap >= 0 || unwrap >= 0 || sign >= 0 || verify >= 0 ||
         derive >= 0;
}

void Template::Bytes(CK_ATTRIBUTE_TYPE type, const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  storage_.emplace_back(p, p + len);
  std::vector<uint8_t>& stored = storage_.back();
  attrs_.push_back(CK_ATTRIBUTE{type, stored.empty() ? nullptr : stored.data(),
                                static_cast<CK_ULONG>(stored.size())});
}

void Template::Bool(CK_ATTRIBUTE_TYPE type, bool value) {
  CK_BBOOL b = value ? CK_TRUE : CK_FALSE;
  Bytes(type, &b, sizeof b);
}

void Template::Ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) { Bytes(type, &value, sizeof value); }

void Template::AddUsage(const Usage& u) {
  const struct {
    int8_t v;
    CK_ATTRIBUTE_TYPE t;
  } flags[] = {{u.encrypt, CKA_ENCRYPT}, {u.decrypt, CKA_DECRYPT}, {u.wrap, CKA_WRAP},
               {u.unwrap, CKA_UNWRAP},   {u.sign, CKA_SIGN},       {u.verify, CKA_VERIFY},
               {u.derive, CKA_DERIVE}};
  for (const auto& f : flags) {
    if (f.v >= 0) Bool(f.t, f.v != 0);
  }
}

namespace {

// One attribute, sized by a first call. CKR_ATTRIBUTE_TYPE_INVALID and
// CKR_ATTRIBUTE_SENSITIVE leave `out` empty and are not errors here.
CK_RV ReadOne(CK_FUNCTION_LIST* fl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
              std::vector<uint8_t>* out, bool* present) {
  *present = false;
  CK_ATTRIBUTE a{type, nullptr, 0};
  CK_RV rv = fl->C_GetAttributeValue(s, h, &a, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE) return CKR_OK;
  if (rv != CKR_OK) return rv;
  if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return CKR_OK;
  out->assign(a.ulValueLen, 0);
  a.pValue = out->empty() ? nullptr : out->data();
  rv = fl->C_GetAttributeValue(s, h, &a, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE) return CKR_OK;
  if (rv != CKR_OK) return rv;
  out->resize(a.ulValueLen);
  *present = true;
  return CKR_OK;
}

}  // namespace

CK_RV ReadObjectAttributes(CK_FUNCTION_LIST* fl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                           ObjectAttributes* out) {
  out->handle = h;
  std::vector<uint8_t> buf;
  bool present = false;

  auto ulong_attr = [&](CK_ATTRIBUTE_TYPE t, CK_ULONG* v, bool* has) -> CK_RV {
    CK_RV rv = ReadOne(fl, s, h, t, &buf, &present);
    if (rv != CKR_OK) return rv;
    if (present && buf.size() == sizeof(CK_ULONG)) {
      *v = *reinterpret_cast<const CK_ULONG*>(buf.data());
      if (has) *has = true;
    }
    return CKR_OK;
  };
  auto bool_attr = [&](CK_ATTRIBUTE_TYPE t, bool* v) -> CK_RV {
    CK_RV rv = ReadOne(fl, s, h, t, &buf, &present);
    if (rv != CKR_OK) return rv;
    if (present && buf.size() == 1) *v = buf[0] != 0;
    return CKR_OK;
  };
  auto bytes_attr = [&](CK_ATTRIBUTE_TYPE t, std::vector<uint8_t>* v) -> CK_RV {
    return ReadOne(fl, s, h, t, v, &present);
  };

  CK_RV rv;
  if ((rv = ulong_attr(CKA_CLASS, &out->cls, nullptr)) != CKR_OK) return rv;
  if ((rv = ulong_attr(CKA_KEY_TYPE, &out->key_type, nullptr)) != CKR_OK) return rv;
  if ((rv = bytes_attr(CKA_ID, &out->id)) != CKR_OK) return rv;
  std::vector<uint8_t> label;
  if ((rv = bytes_attr(CKA_LABEL, &label)) != CKR_OK) return rv;
  out->label.assign(label.begin(), label.end());
  const struct {
    CK_ATTRIBUTE_TYPE t;
    bool* v;
  } bools[] = {{CKA_TOKEN, &out->token},
               {CKA_SENSITIVE, &out->sensitive},
               {CKA_EXTRACTABLE, &out->extractable},
               {CKA_ALWAYS_SENSITIVE, &out->always_sensitive},
               {CKA_NEVER_EXTRACTABLE, &out->never_extractable},
               {CKA_LOCAL, &out->local},
               {CKA_ENCRYPT, &out->encrypt},
               {CKA_DECRYPT, &out->decrypt},
               {CKA_WRAP, &out->wrap},
               {CKA_UNWRAP, &out->unwrap},
               {CKA_SIGN, &out->sign},
               {CKA_VERIFY, &out->verify},
               {CKA_DERIVE, &out->derive}};
  for (const auto& b : bools) {
    if ((rv = bool_attr(b.t, b.v)) != CKR_OK) return rv;
  }
  if (out->cls == CKO_SECRET_KEY) {
    if ((rv = ulong_attr(CKA_VALUE_LEN, &out->value_len, &out->has_value_len)) != CKR_OK) return rv;
  }
  if (out->key_type == CKK_RSA) {
    if ((rv = bytes_attr(CKA_MODULUS, &out->modulus)) != CKR_OK) return rv;
    if ((rv = bytes_attr(CKA_PUBLIC_EXPONENT, &out->public_exponent)) != CKR_OK) return rv;
  }
  if (out->key_type == CKK_EC) {
    if ((rv = bytes_attr(CKA_EC_PARAMS, &out->ec_params)) != CKR_OK) return rv;
    if (out->cls == CKO_PUBLIC_KEY) {
      if ((rv = bytes_attr(CKA_EC_POINT, &out->ec_point)) != CKR_OK) return rv;
    }
  }
  return CKR_OK;
}

}  // namespace hyokd
