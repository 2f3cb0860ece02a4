#include "module.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <map>

namespace hyokd {

namespace {

std::mutex g_libs_mu;
std::map<std::string, Library*>& Libs() {
  static auto* libs = new std::map<std::string, Library*>();
  return *libs;
}

CK_RV InitializeWithLocking(CK_FUNCTION_LIST* fl, bool* owns) {
  // Without CKF_OS_LOCKING_OK SoftHSM2 turns its own locks off and concurrent calls
  // crash; every module must be told the application is multi-threaded.
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = fl->C_Initialize(&args);
  *owns = rv == CKR_OK;
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) rv = CKR_OK;
  return rv;
}

}  // namespace

std::string TrimPadded(const unsigned char* p, size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  size_t end = s.find_last_not_of(" \0", std::string::npos, 2);
  return end == std::string::npos ? std::string() : s.substr(0, end + 1);
}

Library* Library::Acquire(const std::string& path, OpError* err) {
  std::lock_guard<std::mutex> g(g_libs_mu);
  auto it = Libs().find(path);
  if (it != Libs().end()) {
    it->second->refs_++;
    return it->second;
  }
  void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (dl == nullptr) {
    *err = OpError::Hyokd("HYOKD_MODULE_LOAD", false,
                          "cannot load the PKCS#11 module (dlopen failed; check hsm.module)");
    return nullptr;
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl, "C_GetFunctionList"));
  CK_FUNCTION_LIST* fl = nullptr;
  CK_RV rv = get_list ? get_list(&fl) : CKR_FUNCTION_NOT_SUPPORTED;
  if (rv != CKR_OK || fl == nullptr) {
    dlclose(dl);
    *err = OpError::Hyokd("HYOKD_MODULE_LOAD", false,
                          "the library is not a PKCS#11 module (no C_GetFunctionList)");
    return nullptr;
  }
  auto* lib = new Library();
  lib->path_ = path;
  lib->dl_ = dl;
  lib->fl_ = fl;
  rv = InitializeWithLocking(fl, &lib->owns_init_);
  if (rv != CKR_OK) {
    dlclose(dl);
    delete lib;
    *err = OpError::FromRv(rv, "C_Initialize");
    return nullptr;
  }
  lib->refs_ = 1;
  Libs()[path] = lib;
  return lib;
}

void Library::Release(Library* lib) {
  if (lib == nullptr) return;
  std::lock_guard<std::mutex> g(g_libs_mu);
  if (--lib->refs_ > 0) return;
  Libs().erase(lib->path_);
  if (lib->owns_init_) lib->fl_->C_Finalize(nullptr);
  // The library stays mapped: some modules keep threads or atexit handlers that would
  // run into unmapped code after dlclose.
  delete lib;
}

CK_RV Library::Reinitialize() {
  fl_->C_Finalize(nullptr);
  return InitializeWithLocking(fl_, &owns_init_);
}

Module* Module::Open(ModuleOptions&& opts, OpError* err) {
  auto* m = new Module();
  m->opts_.path = opts.path;
  m->opts_.token_label = opts.token_label;
  m->opts_.token_serial = opts.token_serial;
  m->opts_.pin.Assign(opts.pin.data(), opts.pin.size());
  opts.pin.Clear();
  m->lib_ = Library::Acquire(m->opts_.path, err);
  if (m->lib_ == nullptr) {
    delete m;
    return nullptr;
  }
  bool ok;
  {
    std::lock_guard<std::mutex> g(m->keeper_mu_);
    ok = m->FindSlotAndLogin(err);
  }
  if (!ok) {
    delete m;  // the destructor logs out, closes the keeper and releases the library
    return nullptr;
  }
  return m;
}

Module::~Module() { Close(); }

bool Module::FindSlotAndLogin(OpError* err) {
  CK_FUNCTION_LIST* f = fl();
  CK_ULONG n = 0;
  CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &n);
  if (rv != CKR_OK) {
    *err = OpError::FromRv(rv, "C_GetSlotList");
    return false;
  }
  std::vector<CK_SLOT_ID> slots(n);
  rv = f->C_GetSlotList(CK_TRUE, slots.data(), &n);
  if (rv != CKR_OK) {
    *err = OpError::FromRv(rv, "C_GetSlotList");
    return false;
  }
  slots.resize(n);
  bool found = false;
  // The slot id of a SoftHSM2 token changes when it is initialized: always find the
  // token by label (or serial), never by slot number.
  for (CK_SLOT_ID id : slots) {
    CK_TOKEN_INFO ti{};
    if (f->C_GetTokenInfo(id, &ti) != CKR_OK) continue;
    if (!(ti.flags & CKF_TOKEN_INITIALIZED)) continue;
    std::string label = TrimPadded(ti.label, sizeof ti.label);
    std::string serial = TrimPadded(ti.serialNumber, sizeof ti.serialNumber);
    bool match = opts_.token_serial.empty()
                     ? label == opts_.token_label
                     : serial == opts_.token_serial &&
                           (opts_.token_label.empty() || label == opts_.token_label);
    if (!match) continue;
    if (found) {
      *err = OpError::Hyokd("HYOKD_TOKEN_AMBIGUOUS", false,
                            "more than one token matches; select it by serial");
      return false;
    }
    found = true;
    snap_.slot = id;
    snap_.token = ti;
  }
  if (!found) {
    *err = OpError::Hyokd("HYOKD_TOKEN_NOT_FOUND", false,
                          "no initialized token with that label or serial");
    return false;
  }
  f->C_GetInfo(&snap_.module);
  CK_ULONG nm = 0;
  if (f->C_GetMechanismList(snap_.slot, nullptr, &nm) == CKR_OK) {
    mechs_.resize(nm);
    if (f->C_GetMechanismList(snap_.slot, mechs_.data(), &nm) == CKR_OK) {
      mechs_.resize(nm);
    } else {
      mechs_.clear();
    }
  }
  mech_set_ = std::set<CK_MECHANISM_TYPE>(mechs_.begin(), mechs_.end());
  rv =
      f->C_OpenSession(snap_.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &keeper_);
  if (rv != CKR_OK) {
    keeper_ = CK_INVALID_HANDLE;
    *err = OpError::FromRv(rv, "C_OpenSession");
    return false;
  }
  rv = LoginLocked();
  if (rv != CKR_OK) {
    *err = OpError::FromRv(rv, "C_Login");
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
      err->message = "login failed: the PIN was refused by the token (" + err->code + ")";
    }
    return false;
  }
  f->C_GetTokenInfo(snap_.slot, &snap_.token);
  return true;
}

CK_RV Module::LoginLocked() {
  CK_RV rv = fl()->C_Login(keeper_, CKU_USER, const_cast<CK_UTF8CHAR*>(opts_.pin.data()),
                           opts_.pin.size());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) rv = lib_->CheckSharedLogin(snap_.slot, opts_.pin);
  if (rv == CKR_OK && !counted_login_) {
    lib_->AddLogin(snap_.slot, opts_.pin);
    counted_login_ = true;
  }
  return rv;
}

void Library::AddLogin(CK_SLOT_ID slot, const LockedSecret& pin) {
  std::lock_guard<std::mutex> g(login_mu_);
  SlotLogin& l = logins_[slot];
  if (l.users++ == 0) l.pin.Assign(pin.data(), pin.size());
}

CK_RV Library::CheckSharedLogin(CK_SLOT_ID slot, const LockedSecret& pin) {
  std::lock_guard<std::mutex> g(login_mu_);
  auto it = logins_.find(slot);
  if (it == logins_.end()) return CKR_OK;  // logged in by another part of the process
  const LockedSecret& known = it->second.pin;
  // Compare in time independent of where the bytes differ.
  unsigned char diff = known.size() == pin.size() ? 0 : 1;
  size_t n = std::min(known.size(), pin.size());
  for (size_t i = 0; i < n; i++) diff |= known.data()[i] ^ pin.data()[i];
  return diff == 0 ? CKR_OK : CKR_PIN_INCORRECT;
}

bool Library::HasLogin(CK_SLOT_ID slot) {
  std::lock_guard<std::mutex> g(login_mu_);
  return logins_.count(slot) > 0;
}

void Library::DropLogin(CK_SLOT_ID slot) {
  std::lock_guard<std::mutex> g(login_mu_);
  auto it = logins_.find(slot);
  if (it != logins_.end() && --it->second.users <= 0) logins_.erase(it);
}

CK_RV Module::MechanismInfo(CK_MECHANISM_TYPE m, CK_MECHANISM_INFO* out) const {
  return fl()->C_GetMechanismInfo(snap_.slot, m, out);
}

CK_RV Module::OpenSession(CK_SESSION_HANDLE* out) {
  return fl()->C_OpenSession(snap_.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                             out);
}

CK_RV Module::Relogin() {
  std::lock_guard<std::mutex> g(keeper_mu_);
  if (closed_) return CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_SESSION_INFO si{};
  CK_RV rv = fl()->C_GetSessionInfo(keeper_, &si);
  if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
    rv = OpenSession(&keeper_);
    if (rv != CKR_OK) return rv;
    rv = fl()->C_GetSessionInfo(keeper_, &si);
  }
  if (rv != CKR_OK) return rv;
  if (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS) return CKR_OK;
  relogins.fetch_add(1, std::memory_order_relaxed);
  return LoginLocked();
}

CK_RV Module::Reinitialize(OpError* err) {
  std::lock_guard<std::mutex> g(keeper_mu_);
  if (closed_) {
    *err = OpError::Hyokd(kClosed, false, "the HSM module is closed");
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  }
  keeper_ = CK_INVALID_HANDLE;
  CK_RV rv = lib_->Reinitialize();
  if (rv != CKR_OK) {
    *err = OpError::FromRv(rv, "C_Initialize");
    return rv;
  }
  if (!FindSlotAndLogin(err)) return CKR_DEVICE_ERROR;
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return CKR_OK;
}

CK_RV Module::CloseAllSessions() {
  std::lock_guard<std::mutex> g(keeper_mu_);
  return fl()->C_CloseAllSessions(snap_.slot);
}

void Module::Close() {
  std::lock_guard<std::mutex> g(keeper_mu_);
  if (closed_) return;
  closed_ = true;
  if (lib_ != nullptr) {
    bool last = true;
    if (counted_login_) {
      lib_->DropLogin(snap_.slot);
      counted_login_ = false;
      last = !lib_->HasLogin(snap_.slot);
    }
    if (keeper_ != CK_INVALID_HANDLE) {
      // Logging out would log out every other Module on this token in the process.
      if (last) fl()->C_Logout(keeper_);
      fl()->C_CloseSession(keeper_);
      keeper_ = CK_INVALID_HANDLE;
    }
    Library::Release(lib_);
    lib_ = nullptr;
  }
  opts_.pin.Clear();
}

bool InitToken(const std::string& path, const std::string& label, const SecretBytes& so_pin,
               const SecretBytes& user_pin, CK_SLOT_ID* slot_out, std::string* serial_out,
               OpError* err) {
  Library* lib = Library::Acquire(path, err);
  if (lib == nullptr) return false;
  CK_FUNCTION_LIST* f = lib->fl();
  auto fail = [&](CK_RV rv, const char* what) {
    *err = OpError::FromRv(rv, what);
    Library::Release(lib);
    return false;
  };
  CK_ULONG n = 0;
  CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &n);
  if (rv != CKR_OK) return fail(rv, "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(n);
  rv = f->C_GetSlotList(CK_TRUE, slots.data(), &n);
  if (rv != CKR_OK) return fail(rv, "C_GetSlotList");
  slots.resize(n);
  CK_SLOT_ID slot = 0;
  bool free_slot = false;
  for (CK_SLOT_ID id : slots) {
    CK_TOKEN_INFO ti{};
    if (f->C_GetTokenInfo(id, &ti) != CKR_OK) continue;
    if (ti.flags & CKF_TOKEN_INITIALIZED) {
      if (TrimPadded(ti.label, sizeof ti.label) == label) {
        *err = OpError::Hyokd("HYOKD_TOKEN_EXISTS", false, "a token with that label exists");
        Library::Release(lib);
        return false;
      }
      continue;
    }
    if (!free_slot) {
      slot = id;
      free_slot = true;
    }
  }
  if (!free_slot) {
    *err = OpError::Hyokd("HYOKD_NO_FREE_SLOT", false, "no free slot to initialize a token in");
    Library::Release(lib);
    return false;
  }
  unsigned char padded[32];
  std::memset(padded, ' ', sizeof padded);
  std::memcpy(padded, label.data(), std::min(label.size(), sizeof padded));
  rv = f->C_InitToken(slot, const_cast<CK_UTF8CHAR*>(so_pin.data()), so_pin.size(), padded);
  if (rv != CKR_OK) return fail(rv, "C_InitToken");
  // SoftHSM2 moves the token to a new slot id after initialization: find it by label.
  rv = f->C_GetSlotList(CK_TRUE, nullptr, &n);
  if (rv != CKR_OK) return fail(rv, "C_GetSlotList");
  slots.assign(n, 0);
  rv = f->C_GetSlotList(CK_TRUE, slots.data(), &n);
  if (rv != CKR_OK) return fail(rv, "C_GetSlotList");
  slots.resize(n);
  bool found = false;
  CK_TOKEN_INFO ti{};
  for (CK_SLOT_ID id : slots) {
    if (f->C_GetTokenInfo(id, &ti) != CKR_OK) continue;
    if ((ti.flags & CKF_TOKEN_INITIALIZED) && TrimPadded(ti.label, sizeof ti.label) == label) {
      slot = id;
      found = true;
      break;
    }
  }
  if (!found) return fail(CKR_TOKEN_NOT_RECOGNIZED, "C_GetTokenInfo");
  CK_SESSION_HANDLE s;
  rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s);
  if (rv != CKR_OK) return fail(rv, "C_OpenSession");
  rv = f->C_Login(s, CKU_SO, const_cast<CK_UTF8CHAR*>(so_pin.data()), so_pin.size());
  if (rv == CKR_OK) {
    rv = f->C_InitPIN(s, const_cast<CK_UTF8CHAR*>(user_pin.data()), user_pin.size());
    f->C_Logout(s);
  }
  f->C_CloseSession(s);
  if (rv != CKR_OK) return fail(rv, "C_InitPIN");
  *slot_out = slot;
  *serial_out = TrimPadded(ti.serialNumber, sizeof ti.serialNumber);
  Library::Release(lib);
  return true;
}

}  // namespace hyokd
