#include "errors.h"

#include "ckr_table.h"

namespace hyokd {

const char* RvName(CK_RV rv) {
  for (const auto& row : kCkrTable) {
    if (row.rv == rv) return row.name;
  }
  return rv >= CKR_VENDOR_DEFINED ? "CKR_VENDOR_DEFINED" : "CKR_UNKNOWN";
}

bool RvFromName(const std::string& name, CK_RV* out) {
  for (const auto& row : kCkrTable) {
    if (name == row.name) {
      *out = row.rv;
      return true;
    }
  }
  return false;
}

Recovery RecoveryFor(CK_RV rv) {
  switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
      return Recovery::kReopenSession;
    case CKR_USER_NOT_LOGGED_IN:
      return Recovery::kRelogin;
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_KEY_HANDLE_INVALID:
    case CKR_WRAPPING_KEY_HANDLE_INVALID:
    case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
      return Recovery::kReresolve;
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return Recovery::kReinitModule;
    default:
      return Recovery::kNone;
  }
}

bool IsRetriable(CK_RV rv) {
  switch (rv) {
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
    case CKR_FUNCTION_CANCELED:
    case CKR_SESSION_COUNT:
    case CKR_OPERATION_ACTIVE:
      return true;
    default:
      return RecoveryFor(rv) != Recovery::kNone;
  }
}

OpError OpError::FromRv(CK_RV rv, const char* what) {
  OpError e;
  e.code = RvName(rv);
  e.rv = static_cast<long>(rv);
  e.retriable = IsRetriable(rv);
  e.message = std::string(what) + " failed: " + e.code;
  return e;
}

OpError OpError::Hyokd(const char* code, bool retriable, std::string message) {
  OpError e;
  e.code = code;
  e.rv = kHyokdRv;
  e.retriable = retriable;
  e.message = std::move(message);
  return e;
}

}  // namespace hyokd
