// Memory that holds secrets (the PIN, plaintext key bytes): zeroed in a way the compiler
// may not elide, and, for long-lived secrets, locked out of swap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hyokd {

void SecureZero(void* p, size_t n);

// A byte vector that zeroes itself when cleared or destroyed.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t n) : bytes_(n) {}
  SecretBytes(const uint8_t* p, size_t n) : bytes_(p, p + n) {}
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& o) noexcept : bytes_(std::move(o.bytes_)) {}
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  ~SecretBytes() { Clear(); }

  void Assign(const uint8_t* p, size_t n);
  void Resize(size_t n);  // zeroes what it drops
  void Clear();
  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }

 private:
  std::vector<uint8_t> bytes_;
};

// A fixed secret kept for the life of the module (the user PIN, needed to log in again
// after the token drops the login). The pages are mlock'ed where the OS allows it.
class LockedSecret {
 public:
  LockedSecret() = default;
  LockedSecret(const LockedSecret&) = delete;
  LockedSecret& operator=(const LockedSecret&) = delete;
  ~LockedSecret() { Clear(); }

  void Assign(const uint8_t* p, size_t n);
  void Clear();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool locked_ = false;
};

}  // namespace hyokd
