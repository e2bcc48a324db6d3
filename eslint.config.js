// Lint rules that guard money safety and the house style, not just formatting.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', '.stack/**', 'reports/**', 'dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  // CommonJS config files (dependency-cruiser reads .dependency-cruiser.cjs).
  { files: ['**/*.cjs'], languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } } },
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly', fetch: 'readonly', AbortController: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly', performance: 'readonly', setImmediate: 'readonly', structuredClone: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-floating-promises': 'off',
      // SQL goes through slonik's `sql` tag only: raw pg queries are forbidden outside the migration runner.
      'no-restricted-imports': ['error', {
        paths: [{ name: 'pg', message: 'Use slonik and its sql tag (runtime/db.ts); raw pg is not allowed.' }],
      }],
      'no-restricted-syntax': ['error', {
        selector: "CallExpression[callee.property.name='unsafe']",
        message: 'sql.unsafe bypasses typed queries; use sql.type(...) or sql.typeAlias(...).',
      }, {
        // slonik's own form: the tagged template sql.unsafe`...`
        selector: "TaggedTemplateExpression[tag.property.name='unsafe']",
        message: 'sql.unsafe bypasses typed queries; use sql.type(...) or sql.typeAlias(...).',
      }],
    },
  },
);
