// A loaded PKCS#11 module and the token hyokd uses on it: dlopen, C_Initialize with OS
// locking, the token found by label or serial, and the keeper session that holds the
// login for the life of the process (closing the last session would log the token out
// and invalidate every handle).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "errors.h"
#include "p11.h"
#include "secure.h"

namespace hyokd {

// One dlopen'ed library, shared by everything in the process that names the same path
// (C_Initialize is process-wide in PKCS#11).
class Library {
 public:
  // Loads (or shares) the library; C_Initialize with CKF_OS_LOCKING_OK unless it is
  // already initialized. On failure returns nullptr and fills *err.
  static Library* Acquire(const std::string& path, OpError* err);
  static void Release(Library* lib);

  CK_FUNCTION_LIST* fl() const { return fl_; }
  const std::string& path() const { return path_; }
  // C_Finalize then C_Initialize: every session and handle of every user is gone after.
  CK_RV Reinitialize();

  // PKCS#11 login state belongs to the application, not the session: a second Module on
  // a token that is already logged in gets CKR_USER_ALREADY_LOGGED_IN whatever PIN it
  // offers. The library remembers the PIN that the token accepted, per slot, so a second
  // open with another PIN is refused instead of silently sharing the login.
  void AddLogin(CK_SLOT_ID slot, const LockedSecret& pin);
  // CKR_OK if no PIN is known for the slot or it matches; CKR_PIN_INCORRECT otherwise.
  CK_RV CheckSharedLogin(CK_SLOT_ID slot, const LockedSecret& pin);
  void DropLogin(CK_SLOT_ID slot);
  bool HasLogin(CK_SLOT_ID slot);

 private:
  Library() = default;
  struct SlotLogin {
    LockedSecret pin;
    int users = 0;
  };
  std::mutex login_mu_;
  std::map<CK_SLOT_ID, SlotLogin> logins_;
  std::string path_;
  void* dl_ = nullptr;
  CK_FUNCTION_LIST* fl_ = nullptr;
  int refs_ = 0;
  bool owns_init_ = false;
};

struct ModuleOptions {
  std::string path;
  std::string token_label;
  std::string token_serial;
  LockedSecret pin;
};

struct TokenSnapshot {
  CK_SLOT_ID slot = 0;
  CK_TOKEN_INFO token{};
  CK_INFO module{};
};

// Thread-safe: workers call Relogin/OpenSession concurrently; Reinitialize is called by
// the pool's supervisor only while every worker is paused.
class Module {
 public:
  // Opens: load, find the token, open the keeper session, log in. Blocking.
  static Module* Open(ModuleOptions&& opts, OpError* err);
  ~Module();  // Close() if not closed

  CK_FUNCTION_LIST* fl() const { return lib_->fl(); }
  CK_SLOT_ID slot() const { return snap_.slot; }
  const TokenSnapshot& snapshot() const { return snap_; }
  const std::vector<CK_MECHANISM_TYPE>& mechanisms() const { return mechs_; }
  bool HasMechanism(CK_MECHANISM_TYPE m) const { return mech_set_.count(m) > 0; }
  CK_RV MechanismInfo(CK_MECHANISM_TYPE m, CK_MECHANISM_INFO* out) const;

  // Incremented by every successful re-initialization: sessions opened under an older
  // generation are gone.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  CK_RV OpenSession(CK_SESSION_HANDLE* out);
  // Logs in again if the token dropped the login (the keeper is reopened if it died).
  CK_RV Relogin();
  // Runs `fn(keeper)` under the keeper's lock: object copies that must outlive worker
  // sessions are created there.
  template <typename Fn>
  CK_RV WithKeeper(Fn fn) {
    std::lock_guard<std::mutex> g(keeper_mu_);
    return fn(keeper_);
  }
  // Re-initializes the library and logs in again; the caller has paused all workers.
  CK_RV Reinitialize(OpError* err);
  // Test hook: C_CloseAllSessions on the slot, as a token reset would.
  CK_RV CloseAllSessions();
  // Logs out, closes the keeper, releases the library. Idempotent.
  void Close();

  std::atomic<uint64_t> relogins{0};

 private:
  Module() = default;
  bool FindSlotAndLogin(OpError* err);  // needs keeper_mu_
  CK_RV LoginLocked();

  Library* lib_ = nullptr;
  ModuleOptions opts_;
  TokenSnapshot snap_;
  std::vector<CK_MECHANISM_TYPE> mechs_;
  std::set<CK_MECHANISM_TYPE> mech_set_;
  std::mutex keeper_mu_;
  CK_SESSION_HANDLE keeper_ = CK_INVALID_HANDLE;
  std::atomic<uint64_t> generation_{1};
  bool closed_ = false;
  bool counted_login_ = false;  // registered with lib_->AddLogin
};

// Initializes a free token slot: SO PIN, label, then the user PIN. Used to provision the
// embedded SoftHSM2 token and test tokens without putting PINs in argv.
bool InitToken(const std::string& path, const std::string& label, const SecretBytes& so_pin,
               const SecretBytes& user_pin, CK_SLOT_ID* slot_out, std::string* serial_out,
               OpError* err);

std::string TrimPadded(const unsigned char* p, size_t n);

}  // namespace hyokd
