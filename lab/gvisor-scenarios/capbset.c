/* Prints the highest capability PR_CAPBSET_READ accepts, as moby/sys/capability v0.5.0 probes it
 * (capability_linux.go findLastCap), so runsc versions without /proc/sys/kernel/cap_last_cap can be
 * checked without runc. */
#include <stdio.h>
#include <sys/prctl.h>
int main(void) {
  int last = -1;
  for (int c = 0; c < 64; c++) {
    if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) < 0) break;
    last = c;
  }
  printf("%d\n", last);
  return last < 0;
}
