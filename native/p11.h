// The PKCS#11 header comes from Debian's libp11-kit-dev (p11-kit/pkcs11.h); nothing is
// vendored. CRYPTOKI_COMPAT (set in binding.gyp) gives the standard CK_* names.
#pragma once

#include <p11-kit/pkcs11.h>

// PKCS#11 v2.40 section 2.1.21: parameters of CKM_RSA_AES_KEY_WRAP. Older p11-kit
// headers do not declare the structure, so we declare it with the spec's layout.
struct HyokdRsaAesKeyWrapParams {
  CK_ULONG ulAESKeyBits;
  CK_RSA_PKCS_OAEP_PARAMS* pOAEPParams;
};

#ifndef CKM_AES_KEY_WRAP_PAD
#define CKM_AES_KEY_WRAP_PAD 0x0000210AUL
#endif
