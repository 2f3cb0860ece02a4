#include "secure.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

namespace hyokd {

void SecureZero(void* p, size_t n) {
  if (p == nullptr || n == 0) return;
  // A plain memset (vectorized, unlike a volatile byte loop: this runs on the JS thread for
  // every op's buffers). The asm takes p and clobbers memory, so the compiler must assume
  // the zeroes are read and may neither drop the memset nor move it past a later free.
  std::memset(p, 0, n);
  __asm__ __volatile__("" : : "r"(p) : "memory");
}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    Clear();
    bytes_ = std::move(o.bytes_);
  }
  return *this;
}

void SecretBytes::Assign(const uint8_t* p, size_t n) {
  Clear();
  bytes_.assign(p, p + n);
}

void SecretBytes::Resize(size_t n) {
  if (n < bytes_.size()) SecureZero(bytes_.data() + n, bytes_.size() - n);
  // Growing may reallocate: zero the old storage first by hand.
  if (n > bytes_.capacity()) {
    std::vector<uint8_t> grown(n);
    if (!bytes_.empty()) std::memcpy(grown.data(), bytes_.data(), bytes_.size());
    Clear();
    bytes_ = std::move(grown);
    return;
  }
  bytes_.resize(n);
}

void SecretBytes::Clear() {
  SecureZero(bytes_.data(), bytes_.capacity());
  bytes_.clear();
}

void LockedSecret::Assign(const uint8_t* p, size_t n) {
  Clear();
  data_ = static_cast<uint8_t*>(std::malloc(n == 0 ? 1 : n));
  if (data_ == nullptr) return;
  locked_ = mlock(data_, n == 0 ? 1 : n) == 0;
  if (n > 0) std::memcpy(data_, p, n);
  size_ = n;
}

void LockedSecret::Clear() {
  if (data_ == nullptr) return;
  SecureZero(data_, size_ == 0 ? 1 : size_);
  if (locked_) munlock(data_, size_ == 0 ? 1 : size_);
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
  locked_ = false;
}

}  // namespace hyokd
