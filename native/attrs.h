// Attribute templates (built on the JS thread's copy of the arguments, used on a worker)
// and the object attributes hyokd reads back. Secret values (CKA_VALUE of a key) are
// never read.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "p11.h"

namespace hyokd {

// Tri-state usage flags: -1 leaves the attribute out of the template.
struct Usage {
  int8_t encrypt = -1, decrypt = -1, wrap = -1, unwrap = -1, sign = -1, verify = -1, derive = -1;
  bool Any() const;
};

// A CK_ATTRIBUTE array with storage that stays put while the array is in use.
class Template {
 public:
  Template() = default;
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  void Bool(CK_ATTRIBUTE_TYPE type, bool value);
  void Ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value);
  void Bytes(CK_ATTRIBUTE_TYPE type, const void* data, size_t len);
  void Text(CK_ATTRIBUTE_TYPE type, const std::string& s) { Bytes(type, s.data(), s.size()); }
  void AddUsage(const Usage& u);

  CK_ATTRIBUTE* data() { return attrs_.empty() ? nullptr : attrs_.data(); }
  CK_ULONG size() const { return static_cast<CK_ULONG>(attrs_.size()); }

 private:
  std::vector<CK_ATTRIBUTE> attrs_;
  std::deque<std::vector<uint8_t>> storage_;
};

struct ObjectAttributes {
  CK_OBJECT_HANDLE handle = 0;
  CK_OBJECT_CLASS cls = static_cast<CK_OBJECT_CLASS>(-1);
  CK_KEY_TYPE key_type = static_cast<CK_KEY_TYPE>(-1);
  std::vector<uint8_t> id;
  std::string label;
  bool token = false, sensitive = false, extractable = false, always_sensitive = false,
       never_extractable = false, local = false;
  bool encrypt = false, decrypt = false, wrap = false, unwrap = false, sign = false, verify = false,
       derive = false;
  CK_ULONG value_len = 0;
  bool has_value_len = false;
  std::vector<uint8_t> modulus, public_exponent, ec_point, ec_params;
};

// Reads the attributes above one by one (a token may reject some types for some
// objects; those stay at their defaults). Returns the first session-level failure.
CK_RV ReadObjectAttributes(CK_FUNCTION_LIST* fl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                           ObjectAttributes* out);

}  // namespace hyokd
