// PKCS#11 return values: their names (from the generated table) and what each means for
// recovery. Errors travel as codes, never as strings to parse.
#pragma once

#include <string>

#include "p11.h"

namespace hyokd {

// hyokd's own conditions, reported with rv = kHyokdRv and a HYOKD_* code.
constexpr long kHyokdRv = -1;
constexpr const char* kQueueFull = "HYOKD_QUEUE_FULL";
constexpr const char* kUnavailable = "HYOKD_HSM_UNAVAILABLE";
constexpr const char* kClosed = "HYOKD_CLOSED";
constexpr const char* kKeyNotFound = "HYOKD_KEY_NOT_FOUND";
constexpr const char* kKeyAmbiguous = "HYOKD_KEY_AMBIGUOUS";
constexpr const char* kUnsupported = "HYOKD_UNSUPPORTED";
constexpr const char* kDeadline = "HYOKD_DEADLINE_EXCEEDED";

// What a failed call means for the session and module that ran it.
enum class Recovery {
  kNone,           // data or argument error: the session is fine
  kReopenSession,  // the session is gone: reopen it and retry once
  kRelogin,        // the login is gone: log in again and retry once
  kReresolve,      // the object handle is stale: find the key again and retry once
  kReinitModule,   // the device is gone: re-initialize the module with backoff
};

const char* RvName(CK_RV rv);  // "CKR_..." or "CKR_VENDOR_DEFINED"/"CKR_UNKNOWN"
bool RvFromName(const std::string& name, CK_RV* out);
Recovery RecoveryFor(CK_RV rv);
bool IsRetriable(CK_RV rv);

// An error as it crosses back to JS: the code, rv and whether a retry may succeed.
struct OpError {
  std::string code;
  long rv = 0;
  bool retriable = false;
  std::string message;

  static OpError FromRv(CK_RV rv, const char* what);
  static OpError Hyokd(const char* code, bool retriable, std::string message);
};

}  // namespace hyokd
