{
  "targets": [
    {
      "target_name": "hyokd_native",
      "sources": [
        "native/addon.cc",
        "native/module.cc",
        "native/session_pool.cc",
        "native/ops.cc",
        "native/convert.cc",
        "native/attrs.cc",
        "native/errors.cc",
        "native/secure.cc",
        "native/audit_write.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "/usr/include/p11-kit-1",
        "<(INTERMEDIATE_DIR)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NAPI_CPP_EXCEPTIONS",
        "CRYPTOKI_COMPAT",
        "_FORTIFY_SOURCE=2"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-fstack-protector-strong", "-O2"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-fstack-protector-strong", "-O2"],
      "libraries": ["-ldl", "-lpthread"],
      "actions": [
        {
          "action_name": "ckr_table",
          "inputs": ["scripts/gen-ckr-table.mjs", "/usr/include/p11-kit-1/p11-kit/pkcs11.h"],
          "outputs": ["<(INTERMEDIATE_DIR)/ckr_table.h"],
          "action": ["node", "scripts/gen-ckr-table.mjs", "/usr/include/p11-kit-1/p11-kit/pkcs11.h", "<(INTERMEDIATE_DIR)/ckr_table.h"]
        }
      ],
      "conditions": [
        ["OS=='linux'", { "ldflags": ["-Wl,-z,relro,-z,now"] }]
      ]
    }
  ]
}
