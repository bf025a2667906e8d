"""Guest code coverage: gcc's own counters, read out of guest memory and written as
.gcda files for gcov and gcovr (gcda.py)."""
