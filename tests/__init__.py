"""The test suite, laid out like the packages it tests (tests/<package>/ for lib/<package>/)."""
