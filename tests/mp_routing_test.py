#!/usr/bin/env python3
"""Every test in kdist_mp_tests runs somewhere: each is matched by some --gtest_filter that
tests/CMakeLists.txt or a test script under tests/ hands the binary, so that a new suite is not
left out of ctest (and green) by a missing filter.

    python3 tests/mp_routing_test.py KDIST_MP_TESTS TESTS_DIR
"""
import fnmatch
import pathlib
import re
import subprocess
import sys

# kdist_mp_test(name ranks "filter"), and --gtest_filter=... in CMake or in a shell script;
# a shell variable in a filter ($1, "$filter") stands for any name.
CMAKE_FILTER = re.compile(r'kdist_mp_test\(\S+\s+\d+\s+"([^"]+)"\)')
FLAG_FILTER = re.compile(r"--gtest_filter=([\"']?)([^\"'\s)]+)\1")


def filters(tests_dir):
    patterns = []
    for path in sorted(tests_dir.rglob("*")):
        if path.name != "CMakeLists.txt" and path.suffix != ".sh":
            continue
        text = path.read_text()
        found = CMAKE_FILTER.findall(text) + [m[1] for m in FLAG_FILTER.findall(text)]
        for flt in found:
            patterns += [re.sub(r"\$\{?\w+\}?", "*", p) for p in flt.split(":") if p]
    return patterns


def listed_tests(binary):
    out = subprocess.run([binary, "--gtest_list_tests"], check=True, capture_output=True, text=True).stdout
    tests, suite = [], None
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            suite = line.split("#")[0].strip()
        else:
            tests.append(suite + line.split("#")[0].strip())
    return tests


def main():
    binary, tests_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    patterns = filters(tests_dir)
    tests = listed_tests(binary)
    missed = [t for t in tests if not any(fnmatch.fnmatchcase(t, p) for p in patterns)]
    for test in missed:
        print(f"[kdist.tests] {test} is in kdist_mp_tests but no ctest filter runs it "
              f"(add its suite to a kdist_mp_test(...) line of tests/CMakeLists.txt)")
    print(f"[kdist.tests] {len(tests) - len(missed)} of {len(tests)} multi-process tests are routed")
    return 1 if missed or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
