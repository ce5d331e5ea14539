#!/bin/sh
# Compiles capbset.c on first use into the lab dir (outside the repository) and runs it.
LAB="${SANDKUBE_LAB_DIR:-/var/cache/sandkube-lab}"
EXE="$LAB/scenario-tools/capbset"
if [ ! -x "$EXE" ]; then mkdir -p "$LAB/scenario-tools" && gcc -O2 -static -o "$EXE" "$(dirname "$0")/capbset.c" || exit 1; fi
exec "$EXE"
