/**
 * The workload that proves a sandkube cluster runs real things (issue 8, "Test it against real
 * things"): a 2-replica busybox httpd Deployment that uses a ConfigMap volume, a Secret as env, an
 * initContainer writing into an emptyDir, a locked-down securityContext and an httpGet readiness
 * probe; a Job that completes; and a client pod for pod-to-pod traffic. Pure: typed objects in,
 * YAML out, so every property the issue demands is unit-tested without a cluster.
 */
import type {
  V1ConfigMap,
  V1Container,
  V1Deployment,
  V1Job,
  V1Namespace,
  V1Pod,
  V1PodSpec,
  V1Secret,
  V1SecurityContext,
} from "@kubernetes/client-node";
import { stringify } from "yaml";

/** Built by `sandkube images build` from Debian's busybox-static; never pulled. */
export const DEFAULT_VERIFY_IMAGE = "sandkube.local/busybox:latest";

/** Not root, so runAsNonRoot holds without an /etc/passwd in the image: the traditional `nobody`. */
export const DEFAULT_VERIFY_UID = 65534;

export const HTTP_PORT = 8080;
export const WEB_APP = "web";
export const WEB_DEPLOYMENT = "web";
export const WEB_CONTAINER = "web";
export const INIT_CONTAINER = "prepare";
export const CLIENT_POD = "client";
export const JOB_NAME = "done";
export const CONFIG_MAP = "web-content";
export const SECRET = "web-secret";
export const SECRET_KEY = "token";
export const SECRET_ENV = "SECRET_TOKEN";

/** Where the pieces live inside the web containers. */
export const CONFIG_DIR = "/config";
export const SERVE_DIR = "/www";

/** What the containers print, so `kubectl logs` has a known line to find. */
export const WEB_LOG_LINE = `sandkube-verify: serving ${SERVE_DIR} on ${HTTP_PORT}`;
export const INIT_LOG_LINE = "sandkube-verify: prepare copied the page";
export const JOB_LOG_LINE = "done";
/** Written by the initContainer next to the page, so a check can see the emptyDir was shared. */
export const INIT_MARKER_FILE = "init.txt";
export const INIT_MARKER = "written by the initContainer";

export interface WorkloadOptions {
  /** DNS-label characters; makes the namespace `sandkube-verify-<suffix>`. */
  readonly suffix: string;
  readonly image?: string;
  readonly uid?: number;
  /** Put in the Secret; exec reads it back from the environment. */
  readonly secretValue?: string;
}

/** Every object of the workload, in the order they are applied. */
export interface Workload {
  readonly namespace: string;
  /** What the ConfigMap serves as index.html; port-forward and pod-to-pod compare against it. */
  readonly indexHtml: string;
  readonly secretValue: string;
  readonly objects: {
    readonly namespace: V1Namespace;
    readonly configMap: V1ConfigMap;
    readonly secret: V1Secret;
    readonly deployment: V1Deployment;
    readonly job: V1Job;
    readonly client: V1Pod;
  };
}

export function verifyNamespace(suffix: string): string {
  const name = `sandkube-verify-${suffix}`;
  // A namespace name is a DNS label (RFC 1123): at most 63 characters, lower case, digits and '-'.
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(suffix) || name.length > 63) {
    throw new Error(
      `verify: namespace suffix "${suffix}" must be lower-case letters, digits and '-', at most ${63 - "sandkube-verify-".length} characters`,
    );
  }
  return name;
}

/** Ten base-36 characters of randomness: unique enough for one namespace per run. */
export function randomSuffix(random: () => number = Math.random): string {
  let s = "";
  for (let i = 0; i < 10; i++) s += Math.floor(random() * 36).toString(36);
  return s;
}

/**
 * Everything the restricted Pod Security Standard asks of a container that this workload can give
 * without a seccomp profile (sandkube-runtime's seccomp support is its own question, see
 * docs/runtime.md).
 */
function lockedDown(uid: number): V1SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
  };
}

function container(
  name: string,
  image: string,
  uid: number,
  script: string,
  extra: Partial<V1Container> = {},
): V1Container {
  return {
    name,
    image,
    imagePullPolicy: "Never",
    command: ["sh", "-c", script],
    securityContext: lockedDown(uid),
    ...extra,
  };
}

/**
 * Shared by every pod: busybox as PID 1 installs no SIGTERM handler, so the kernel drops the signal
 * and deletion would wait out the default 30 s grace period before SIGKILL.
 */
function podSpecBase(
  uid: number,
): Pick<V1PodSpec, "securityContext" | "terminationGracePeriodSeconds"> {
  return {
    securityContext: { runAsNonRoot: true, runAsUser: uid, runAsGroup: uid },
    terminationGracePeriodSeconds: 1,
  };
}

export function renderWorkload(options: WorkloadOptions): Workload {
  const namespace = verifyNamespace(options.suffix);
  const image = options.image ?? DEFAULT_VERIFY_IMAGE;
  const uid = options.uid ?? DEFAULT_VERIFY_UID;
  if (!Number.isInteger(uid) || uid <= 0) {
    throw new Error(`verify: uid must be a positive integer (runAsNonRoot), not ${uid}`);
  }
  const secretValue = options.secretValue ?? `s3cret-${options.suffix}`;
  const indexHtml = `<html><body><h1>sandkube verify ${options.suffix}</h1></body></html>\n`;
  const labels = { app: WEB_APP };

  const web = container(
    WEB_CONTAINER,
    image,
    uid,
    `echo '${WEB_LOG_LINE}'; exec httpd -f -p ${HTTP_PORT} -h ${SERVE_DIR}`,
    {
      ports: [{ name: "http", containerPort: HTTP_PORT, protocol: "TCP" }],
      env: [{ name: SECRET_ENV, valueFrom: { secretKeyRef: { name: SECRET, key: SECRET_KEY } } }],
      volumeMounts: [
        { name: "content", mountPath: CONFIG_DIR, readOnly: true },
        { name: "www", mountPath: SERVE_DIR, readOnly: true },
      ],
      readinessProbe: {
        httpGet: { path: "/", port: HTTP_PORT },
        periodSeconds: 1,
        timeoutSeconds: 2,
        failureThreshold: 3,
      },
    },
  );
  const prepare = container(
    INIT_CONTAINER,
    image,
    uid,
    `cp ${CONFIG_DIR}/index.html ${SERVE_DIR}/index.html && echo '${INIT_MARKER}' > ${SERVE_DIR}/${INIT_MARKER_FILE} && echo '${INIT_LOG_LINE}'`,
    {
      volumeMounts: [
        { name: "content", mountPath: CONFIG_DIR, readOnly: true },
        { name: "www", mountPath: SERVE_DIR },
      ],
    },
  );

  return {
    namespace,
    indexHtml,
    secretValue,
    objects: {
      namespace: {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: {
          name: namespace,
          labels: { "app.kubernetes.io/managed-by": "sandkube-verify" },
        },
      },
      configMap: {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: CONFIG_MAP, namespace },
        data: { "index.html": indexHtml },
      },
      secret: {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: SECRET, namespace },
        type: "Opaque",
        stringData: { [SECRET_KEY]: secretValue },
      },
      deployment: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: WEB_DEPLOYMENT, namespace, labels },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              ...podSpecBase(uid),
              initContainers: [prepare],
              containers: [web],
              volumes: [
                { name: "content", configMap: { name: CONFIG_MAP } },
                { name: "www", emptyDir: {} },
              ],
            },
          },
        },
      },
      job: {
        apiVersion: "batch/v1",
        kind: "Job",
        metadata: { name: JOB_NAME, namespace },
        spec: {
          backoffLimit: 2,
          template: {
            spec: {
              ...podSpecBase(uid),
              restartPolicy: "Never",
              containers: [container("done", image, uid, `echo ${JOB_LOG_LINE}`)],
            },
          },
        },
      },
      client: {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: CLIENT_POD, namespace, labels: { app: "client" } },
        spec: {
          ...podSpecBase(uid),
          containers: [container("client", image, uid, "echo client up; exec sleep 3600")],
        },
      },
    },
  };
}

/** One YAML stream, in apply order. */
export function toYaml(objects: readonly object[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0 })).join("---\n");
}

/**
 * The namespace alone, then the rest: a bare Pod is refused by the ServiceAccount admission plugin
 * ("error looking up service account NS/default") until the controller-manager has created the new
 * namespace's `default` ServiceAccount, so the caller waits for it between the two.
 */
export function workloadYaml(workload: Workload): { namespace: string; rest: string } {
  const { namespace, configMap, secret, deployment, job, client } = workload.objects;
  return {
    namespace: toYaml([namespace]),
    rest: toYaml([configMap, secret, deployment, job, client]),
  };
}
