// Flat ESLint config: @eslint/js and typescript-eslint recommended rule sets.
// Generated and build output is ignored; formatting is prettier's job, not ESLint's.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  globalIgnores(['dist/', 'build/', 'node_modules/', 'var/', '.tap/', 'coverage/', 'bench/out/']),
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: {
        // Node globals used by scripts and sources (ESM: no require/module/__dirname).
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        clearImmediate: 'readonly',
        queueMicrotask: 'readonly',
        structuredClone: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        crypto: 'readonly',
      },
    },
    rules: {
      // `_`-prefixed names mark deliberately unused parameters (e.g. interface conformance).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },
  {
    // The code every data-plane call runs: no object literal that starts with a spread and
    // adds properties after it. On Node.js 20 such objects outlive the young generation
    // (bench/RESULTS.md, seventeenth pass); spell the fields out instead.
    files: [
      'src/server/pipeline.ts',
      'src/server/hyok-service.ts',
      'src/server/dek-ops.ts',
      'src/metrics/metrics.ts',
    ],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "ObjectExpression[properties.0.type='SpreadElement']:has(> Property)",
          message:
            'a leading spread plus more properties outlives the young generation on Node.js 20: spell the fields out',
        },
      ],
    },
  },
);
