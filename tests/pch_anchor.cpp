// tests/pch_anchor.cpp: the translation unit that builds the tests' precompiled header.
