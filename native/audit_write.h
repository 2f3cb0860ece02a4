// The audit write helper thread (audit_write.cc), exported to JS as AuditWriteThread.
#pragma once

#include "napi.h"

namespace hyokd {

Napi::Function AuditWriteThreadClass(Napi::Env env);

}  // namespace hyokd
