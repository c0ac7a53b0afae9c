#!/usr/bin/env bash
# What `dotnet format` cannot check: C# lines within 120 columns, and test methods named as sentences in snake case
# (`Greedy_takes_the_highest_logit`). Prints each offence as file:line and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
# characters, not bytes (mawk's length counts bytes): grep in a UTF-8 locale
long=$(git ls-files '*.cs' | LC_ALL=C.UTF-8 xargs grep -nP '^.{121,}$' | cut -d: -f1,2 | sed 's/$/: over 120 columns/' || true)
[[ -n $long ]] && { echo "$long"; status=1; }
# a [Fact]/[Theory] method whose name is not words joined by underscores (proper names such as TinyLlama may stay)
names=$(git ls-files 'tests/*.cs' | xargs awk '
  /^[[:space:]]*\[(Fact|Theory)/ { pending = 1; next }
  pending && match($0, /(void|Task) [A-Za-z0-9_]+\(/) {
    name = substr($0, RSTART, RLENGTH - 1); sub(/^(void|Task) /, "", name); pending = 0
    if (name !~ /^[A-Z][A-Za-z0-9]*(_[A-Za-z0-9]+)+$/)
      printf "%s:%d: test %s is not a snake-case sentence\n", FILENAME, FNR, name
  }')
[[ -n $names ]] && { echo "$names"; status=1; }
exit $status
