/**
 * The images cri-tools v1.34.0's critest pulls, rebuilt from the host's static busybox and three
 * tiny static C programs, because this VM reaches no registry (the preamble: only the Go proxy,
 * Debian apt and npm). Names and image features follow critest's source:
 * pkg/validate/consts.go (the gcr.io/k8s-staging-cri-tools/... list), pkg/framework/util.go
 * (DefaultLinuxContainerImage), security_context_linux.go (nginx, nonewprivs) and
 * images/{image-user,image-test,image-predefined-group,hostnet-nginx}/Dockerfile.
 */
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, linkSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { ensureSuccess, runCommand } from "../src/common/exec.js";

/** The registry paths critest uses; a hosts.toml maps both registries to the loopback one. */
const K8S = "registry.k8s.io";
const CRI_TOOLS = "gcr.io/k8s-staging-cri-tools";

export const DEFAULT_TEST_IMAGE = `${K8S}/e2e-test-images/busybox:1.29-2`;
export const WEB_SERVER_IMAGE = `${K8S}/e2e-test-images/nginx:1.14-2`;
export const PAUSE_IMAGE = `${K8S}/pause:3.10`;

/** A pause that exits on SIGINT/SIGTERM and reaps orphans, as registry.k8s.io/pause does. */
const PAUSE_C = `#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void bye(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0}; a.sa_handler = bye; sigaction(SIGINT, &a, 0); sigaction(SIGTERM, &a, 0);
  struct sigaction c = {0}; c.sa_handler = reap; c.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &c, 0);
  for (;;) pause();
}
`;

/**
 * "nginx": critest's security-context specs look for a process named nginx and for
 * /var/run/nginx.pid, and the networking specs GET / on port 80 (12003 for hostnet-nginx). This
 * parent keeps the name and the pid file; busybox httpd serves the page.
 */
const NGINX_C = `#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static pid_t child;
static void stop(int s) { if (child > 0) kill(child, s); _exit(0); }
int main(void) {
  const char *port = getenv("NGINX_PORT");
  char listen[32]; snprintf(listen, sizeof listen, "%s", port ? port : "80");
  struct sigaction a = {0}; a.sa_handler = stop; sigaction(SIGINT, &a, 0); sigaction(SIGTERM, &a, 0);
  FILE *f = fopen("/var/run/nginx.pid", "w");
  if (f) { fprintf(f, "%d\\n", getpid()); fclose(f); }
  child = fork();
  if (child == 0) {
    execl("/bin/busybox", "httpd", "-f", "-p", listen, "-h", "/usr/share/nginx/html", (char *)0);
    _exit(127);
  }
  int st; while (waitpid(child, &st, 0) < 0) {}
  return 1;
}
`;

/** nonewprivs:1.3 is a setuid-root program that prints its effective uid. */
const NNP_C = `#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\\n", geteuid()); return 0; }
`;

const MISSING_APPLETS: Readonly<Record<string, string>> = {
  pgrep: '#!/bin/sh\npids=$(pidof "$1") || exit 1\nfor p in $pids; do echo "$p"; done\n',
  ipcs: "#!/bin/sh\ncat /proc/sysvipc/shm\n",
};

const PASSWD = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`;
const GROUP = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
users:x:100:
nogroup:x:65534:
`;

interface ImageConfig {
  readonly user?: string;
  readonly cmd?: readonly string[];
  readonly env?: readonly string[];
}

/** One image: the refs it is pushed as, its config, and what its top layer adds to busybox. */
export interface ImageSpec {
  readonly refs: readonly string[];
  readonly config: ImageConfig;
  /** path in the image -> file content, or a host file to copy with its mode. */
  readonly files?: Readonly<
    Record<string, string | { readonly from: string; readonly mode: number }>
  >;
}

/** What critest needs, given the three compiled programs. */
export function critestImages(bin: { pause: string; nginx: string; nnp: string }): ImageSpec[] {
  const web: ImageSpec["files"] = {
    "usr/sbin/nginx": { from: bin.nginx, mode: 0o755 },
    "usr/share/nginx/html/index.html": "<h1>Welcome to nginx!</h1>\n",
    "var/run/.keep": "",
  };
  const sh = ["sh"];
  return [
    { refs: [DEFAULT_TEST_IMAGE], config: { cmd: sh } },
    {
      refs: [PAUSE_IMAGE],
      config: { cmd: ["/pause"] },
      files: { pause: { from: bin.pause, mode: 0o755 } },
    },
    {
      refs: [WEB_SERVER_IMAGE],
      // "master process": nginx retitles itself so, and the ContainerPID spec greps /proc/1/cmdline.
      config: { cmd: ["/usr/sbin/nginx", "master process"], env: ["NGINX_PORT=80"] },
      files: web,
    },
    {
      refs: [`${CRI_TOOLS}/hostnet-nginx-amd64:latest`],
      config: { cmd: ["/usr/sbin/nginx", "master process"], env: ["NGINX_PORT=12003"] },
      files: web,
    },
    {
      refs: [`${K8S}/e2e-test-images/nonewprivs:1.3`],
      config: { cmd: ["/usr/local/bin/nnp"] },
      files: { "usr/local/bin/nnp": { from: bin.nnp, mode: 0o4755 } },
    },
    { refs: [`${CRI_TOOLS}/test-image-user-uid:latest`], config: { cmd: sh, user: "1002" } },
    {
      refs: [`${CRI_TOOLS}/test-image-user-username:latest`],
      config: { cmd: sh, user: "www-data" },
    },
    {
      refs: [`${CRI_TOOLS}/test-image-user-uid-group:latest`],
      config: { cmd: sh, user: "1003:1003" },
    },
    {
      refs: [`${CRI_TOOLS}/test-image-user-username-group:latest`],
      config: { cmd: sh, user: "www-data:www-data" },
    },
    {
      refs: [`${CRI_TOOLS}/test-image-predefined-group:latest`],
      config: { cmd: sh, user: "1000" },
      files: {
        "etc/passwd": `${PASSWD}default-user:x:1000:1000::/home/default-user:/bin/sh\n`,
        "etc/group": `${GROUP}default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n`,
      },
    },
    ...["test-image-latest:latest", "test-image-tag:test", "test-image-tag:all"].map((ref) => ({
      refs: [`${CRI_TOOLS}/${ref}`],
      config: { cmd: sh },
    })),
    {
      refs: [`${K8S}/e2e-test-images/httpd:2.4.39-4`],
      // multi_container_linux.go waits for "httpd" in this container's log, then GETs port 80.
      config: {
        cmd: ["sh", "-c", "echo httpd listening; exec httpd -f -p 80 -h /usr/share/nginx/html"],
      },
      files: web,
    },
    ...[1, 2, 3].map((n) => ({
      refs: [`${CRI_TOOLS}/test-image-${n}:latest`],
      config: { cmd: sh },
      files: { [`test-image-${n}`]: `${n}\n` },
    })),
    {
      refs: [1, 2, 3].map((n) => `${CRI_TOOLS}/test-image-tags:${n}`),
      config: { cmd: sh },
      files: { "test-image-tags": "tags\n" },
    },
  ];
}

/** Compiles the three helper programs statically, so they run on a busybox-only rootfs. */
export async function compileHelpers(
  dir: string,
): Promise<{ pause: string; nginx: string; nnp: string }> {
  mkdirSync(dir, { recursive: true });
  const out: Record<string, string> = {};
  for (const [name, src] of Object.entries({ pause: PAUSE_C, nginx: NGINX_C, nnp: NNP_C })) {
    writeFileSync(join(dir, `${name}.c`), src);
    ensureSuccess(
      await runCommand(["gcc", "-static", "-O2", "-o", join(dir, name), join(dir, `${name}.c`)], {
        timeoutMs: 120_000,
      }),
    );
    out[name] = join(dir, name);
  }
  return out as { pause: string; nginx: string; nnp: string };
}

interface Blob {
  readonly digest: string;
  readonly size: number;
}

function putBlob(blobs: string, data: Buffer): Blob {
  const hex = createHash("sha256").update(data).digest("hex");
  writeFileSync(join(blobs, hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

/** The busybox base: every applet as a symlink, and busybox's own passwd/group. */
async function busyboxLayer(work: string, busybox: string, blobs: string): Promise<Blob> {
  const root = join(work, "base");
  for (const d of ["bin", "etc", "proc", "dev", "sys", "tmp", "root", "var/run", "home"])
    mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, "tmp"), 0o1777);
  copyFileSync(busybox, join(root, "bin/busybox"));
  chmodSync(join(root, "bin/busybox"), 0o755);
  const list = spawnSync(busybox, ["--list"], { encoding: "utf8" }).stdout.split("\n");
  // Hard links, as the busybox image has: critest masks /bin/ls, and masking a symlink would
  // mask what it points to, /bin/busybox, and with it /bin/sh.
  for (const applet of list.filter((a) => a !== "" && a !== "busybox"))
    linkSync(join(root, "bin/busybox"), join(root, "bin", applet));
  // Debian's busybox-static builds neither pgrep nor ipcs; critest runs `pgrep sleep` and
  // `ipcs -m` (looking for a shmid), so these stand in with the same output for those calls.
  for (const [name, script] of Object.entries(MISSING_APPLETS)) {
    writeFileSync(join(root, "bin", name), script);
    chmodSync(join(root, "bin", name), 0o755);
  }
  writeFileSync(join(root, "etc/passwd"), PASSWD);
  writeFileSync(join(root, "etc/group"), GROUP);
  return tarLayer(root, join(work, "base.tar"), blobs);
}

async function tarLayer(root: string, tarball: string, blobs: string): Promise<Blob> {
  ensureSuccess(
    await runCommand(
      ["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", root, "-cf", tarball, "."],
      {
        timeoutMs: 60_000,
      },
    ),
  );
  return putBlob(blobs, readFileSync(tarball));
}

/**
 * Writes one OCI image layout holding every image, each manifest annotated with its ref name,
 * so `skopeo copy oci:LAYOUT:REF` can push it. Returns the ref names in the layout.
 */
export async function writeImageLayout(
  work: string,
  busybox: string,
  images: readonly ImageSpec[],
): Promise<string> {
  const layout = join(work, "layout");
  const blobs = join(layout, "blobs/sha256");
  mkdirSync(blobs, { recursive: true });
  const base = await busyboxLayer(work, busybox, blobs);
  const manifests: Record<string, unknown>[] = [];
  let n = 0;
  for (const image of images) {
    const layers = [base];
    if (image.files) {
      const root = join(work, `layer-${n++}`);
      for (const [path, content] of Object.entries(image.files)) {
        const dest = join(root, path);
        mkdirSync(join(dest, ".."), { recursive: true });
        if (typeof content === "string") writeFileSync(dest, content);
        else {
          copyFileSync(content.from, dest);
          chmodSync(dest, content.mode);
        }
      }
      layers.push(await tarLayer(root, `${root}.tar`, blobs));
    }
    const config = putBlob(
      blobs,
      Buffer.from(
        JSON.stringify({
          architecture: "amd64",
          os: "linux",
          config: {
            Cmd: image.config.cmd,
            Env: [
              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              ...(image.config.env ?? []),
            ],
            ...(image.config.user ? { User: image.config.user } : {}),
            // Distinct configs give distinct image ids: critest expects each tag on its own image.
            Labels: { "dev.sandkube.critest-image": image.refs[0] ?? "" },
          },
          rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
        }),
      ),
    );
    const manifest = putBlob(
      blobs,
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
          layers: layers.map((l) => ({
            mediaType: "application/vnd.oci.image.layer.v1.tar",
            ...l,
          })),
        }),
      ),
    );
    // OCI ref names cannot hold a registry reference's ':'; the push maps index -> refs.
    manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...manifest,
      annotations: { "org.opencontainers.image.ref.name": `image-${manifests.length}` },
    });
  }
  writeFileSync(join(layout, "index.json"), JSON.stringify({ schemaVersion: 2, manifests }));
  writeFileSync(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  return layout;
}

/** registry.k8s.io/x/y:t -> x/y:t: the path under the loopback registry that mirrors its host. */
export function registryPath(ref: string): string {
  const slash = ref.indexOf("/");
  return ref.slice(slash + 1);
}

export async function pushImages(
  layout: string,
  registry: string,
  images: readonly ImageSpec[],
): Promise<void> {
  for (const [index, image] of images.entries())
    for (const ref of image.refs)
      ensureSuccess(
        await runCommand(
          [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            `oci:${layout}:image-${index}`,
            `docker://${registry}/${registryPath(ref)}`,
          ],
          { timeoutMs: 120_000 },
        ),
      );
}
