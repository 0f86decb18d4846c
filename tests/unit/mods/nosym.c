/* Test-only shared object without the module descriptor symbol. */
__attribute__((visibility("default"))) int nosym_something = 1;
