/**
 * The lab's pinned components: the node's own binaries (src/install/components.ts, which
 * `sandkube install` builds from the same recipes) plus what only the lab needs: runsc in two
 * versions, critest, and the Debian packages of the scenarios. Pure data.
 */
import {
  CRI_TOOLS_VERSION,
  INSTALL_COMPONENTS,
  type GoComponent,
} from "../src/install/components.js";

export interface DebianComponent {
  readonly kind: "debian";
  readonly name: string;
  readonly packages: readonly string[];
}

export type LabComponent = GoComponent | DebianComponent;

export const GVISOR_VERSION = "v0.0.0-20260905035102-160fafc42237";
export const GVISOR_OLD_VERSION = "v0.0.0-20230715022000-fd277b20b8db";

/** Build order matters: other engineers start using containerd, runc and kubelet first. */
export const LAB_COMPONENTS: readonly LabComponent[] = [
  {
    kind: "debian",
    name: "debian",
    packages: [
      "busybox-static",
      "docker-registry",
      "libseccomp-dev",
      "iproute2",
      "iptables",
      "keyutils",
    ],
  },
  {
    kind: "go",
    name: "runsc",
    module: "gvisor.dev/gvisor",
    version: GVISOR_VERSION,
    binaries: [{ pkg: "gvisor.dev/gvisor/runsc", name: "runsc", destination: "bin" }],
    strategy: { kind: "install" },
    toolchain: "local",
    cgo: false,
    tags: [],
    ldflags: [],
    needsDebian: [],
    // gVisor issue 7719: -buildmode=pie breaks `runsc do`; CGO_ENABLED=0 keeps go from choosing it.
    note: "what `@latest` resolves to; the proxy refuses the `@go` branch query",
  },
  {
    kind: "go",
    name: "runsc-old",
    module: "gvisor.dev/gvisor",
    version: GVISOR_OLD_VERSION,
    binaries: [{ pkg: "gvisor.dev/gvisor/runsc", name: "runsc-old", destination: "bin" }],
    strategy: { kind: "install" },
    // Its go:linkname build tags stop at go1.21; go1.22+ fails to compile the runtime hooks.
    toolchain: "go1.21.13",
    cgo: false,
    tags: [],
    ldflags: [],
    needsDebian: [],
    note: "gVisor before August 2023: no /proc/sys/kernel/cap_last_cap, uname 4.4.0",
  },
  ...INSTALL_COMPONENTS,
  {
    kind: "go",
    name: "critest",
    module: "sigs.k8s.io/cri-tools",
    version: CRI_TOOLS_VERSION,
    binaries: [{ pkg: "sigs.k8s.io/cri-tools/cmd/critest", name: "critest", destination: "bin" }],
    strategy: {
      kind: "wrapper",
      wrapper: "cri-tools",
      localReplacement: () => undefined,
      testBinary: true,
    },
    toolchain: "local",
    cgo: false,
    tags: [],
    ldflags: [`-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION}`],
    needsDebian: [],
    note: "critest is cmd/critest's test binary: `go test -c` inside a wrapper module",
  },
];
