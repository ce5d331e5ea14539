#!/bin/sh
# Builds the container-init helper of sandkube-runtime. Static, so that it runs unchanged inside any
# sandbox or rootfs, whatever libc that has.
set -eu
# The helper links libseccomp statically (Debian: libseccomp-dev ships libseccomp.a).
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "native/build.sh: no C compiler ('$cc') found. sandkube-runtime needs its static helper" >&2
  echo "  sandkube-init: install one (Debian: apt-get install gcc libc6-dev) and rerun, or copy a" >&2
  echo "  sandkube-init built on another x86_64 Linux machine to native/build/ (it is static)." >&2
  exit 1
fi
if ! printf '#include <seccomp.h>\nint main(void) { return seccomp_api_get() < 0; }\n' |
  "$cc" -x c -static -o /dev/null - -lseccomp >/dev/null 2>&1; then
  echo "native/build.sh: no static libseccomp (seccomp.h and libseccomp.a) for '$cc'. Install it" >&2
  echo "  (Debian: apt-get install libseccomp-dev) and rerun." >&2
  exit 1
fi
mkdir -p "$here/build"
"$cc" -O2 -Wall -Wextra -Werror -static -o "$here/build/sandkube-init" "$here/sandkube-init.c" -lseccomp
"$cc" -O2 -Wall -Wextra -Werror -o "$here/build/sandkube-console-receiver" "$here/console-receiver.c"
"$cc" -O2 -Wall -Wextra -Werror -o "$here/build/sandkube-subreaper" "$here/subreaper.c"
# The pause image holds only this binary, so it must not need a libc from the image.
"$cc" -O2 -Wall -Wextra -Werror -static -o "$here/build/pause" "$here/pause.c"
