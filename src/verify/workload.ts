/**
 * The workload that proves a sandkube cluster runs real things (issue 8, "Test it against real
 * things"; issue 9, Services, DNS and storage): a busybox httpd Deployment (3 replicas by default)
 * that uses a ConfigMap volume, a Secret as env, an initContainer writing into an emptyDir, a
 * locked-down securityContext and an httpGet readiness probe, each replica serving its own
 * hostname; a ClusterIP and a NodePort Service over it; a CoreDNS behind a UDP Service; a
 * PersistentVolumeClaim with a writer pod; a Job that completes; and a client pod for pod-to-pod
 * and pod-to-Service traffic. Pure: typed objects in, YAML out, so every property the issues demand
 * is unit-tested without a cluster.
 */
import type {
  V1ConfigMap,
  V1PersistentVolumeClaim,
  V1Service,
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

/** Built by sandkube from Go modules for kube-system's DNS; the UDP Service check runs one more. */
export const DEFAULT_DNS_IMAGE = "sandkube.local/coredns:v1.13.2";

export const DEFAULT_WEB_REPLICAS = 3;

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
export const POD_NAME_ENV = "POD_NAME";

/** The ClusterIP Service over the web pods, and a NodePort one so each data path fails alone. */
export const WEB_SERVICE = "web";
export const NODEPORT_SERVICE = "web-nodeport";
export const SERVICE_PORT = 80;
/** Each web pod serves its own hostname here, so a reply names the replica that answered. */
export const HOSTNAME_PATH = "/hostname";

/** A CoreDNS that knows one name, behind a UDP Service: the "UDP Service" test. */
export const DNS_PROBE = "dns-probe";
export const DNS_PROBE_CONFIG_MAP = "dns-probe-corefile";
/** Above 1024, so CoreDNS needs no NET_BIND_SERVICE as the non-root user it runs as. */
export const DNS_PROBE_PORT = 5353;
export const DNS_PROBE_READY_PORT = 8181;
export const DNS_PROBE_NAME = "probe.verify";
/** TEST-NET-1 (RFC 5737): an address nothing routes to, so only the hosts block can return it. */
export const DNS_PROBE_ADDRESS = "192.0.2.53";

/** The claim has no storageClassName, so the cluster's default StorageClass provisions it. */
export const PVC_NAME = "data";
export const PVC_WRITER = "pvc-writer";
export const PVC_READER = "pvc-reader";
export const PVC_MOUNT = "/data";
export const PVC_FILE = "token";

/** A writable emptyDir in the client pod (its root is read-only): the request loop's markers. */
export const CLIENT_SCRATCH = "/tmp";

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
  /** Web replicas behind the Services (default 3). */
  readonly replicas?: number;
  readonly dnsImage?: string;
  /** What the PVC writer stores and the reader must read back. */
  readonly pvcToken?: string;
  /** The optional groups of objects to render; all of them unless given. */
  readonly parts?: readonly WorkloadPart[];
  /**
   * Every pod shares the node's network namespace, for nodes where no pod can have one of its own
   * (no veth: gVisor before 2024). One web replica then: two would want the same port.
   */
  readonly hostNetwork?: boolean;
}

/** Groups of objects only some checks need: the caller renders what its checks use. */
export type WorkloadPart = "services" | "udpService" | "pvc";
export const WORKLOAD_PARTS: readonly WorkloadPart[] = ["services", "udpService", "pvc"];

/** Every object of the workload, in the order they are applied. */
export interface Workload {
  readonly namespace: string;
  /** What the ConfigMap serves as index.html; port-forward and pod-to-pod compare against it. */
  readonly indexHtml: string;
  readonly secretValue: string;
  readonly replicas: number;
  readonly pvcToken: string;
  readonly hostNetwork: boolean;
  readonly objects: {
    readonly namespace: V1Namespace;
    readonly configMap: V1ConfigMap;
    readonly secret: V1Secret;
    readonly deployment: V1Deployment;
    readonly job: V1Job;
    readonly client: V1Pod;
    readonly services?: { readonly web: V1Service; readonly nodePort: V1Service };
    readonly udpService?: {
      readonly configMap: V1ConfigMap;
      readonly deployment: V1Deployment;
      readonly service: V1Service;
    };
    /** The reader is not here: it is created only after the writer is gone (pvcReader). */
    readonly pvc?: { readonly claim: V1PersistentVolumeClaim; readonly writer: V1Pod };
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
  hostNetwork: boolean,
): Pick<
  V1PodSpec,
  "securityContext" | "terminationGracePeriodSeconds" | "hostNetwork" | "dnsPolicy"
> {
  return {
    securityContext: { runAsNonRoot: true, runAsUser: uid, runAsGroup: uid },
    terminationGracePeriodSeconds: 1,
    // The cluster's DNS still, as for every other pod (kubelet's default for hostNetwork is the node's).
    ...(hostNetwork ? { hostNetwork: true, dnsPolicy: "ClusterFirstWithHostNet" } : {}),
  };
}

/**
 * CoreDNS's own configuration for the UDP Service check: one name from a hosts block and nothing
 * else (no forward), so an answer can only come from this pod.
 */
export function dnsProbeCorefile(): string {
  return [
    `.:${String(DNS_PROBE_PORT)} {`,
    "    errors",
    `    ready :${String(DNS_PROBE_READY_PORT)}`,
    "    hosts {",
    `        ${DNS_PROBE_ADDRESS} ${DNS_PROBE_NAME}`,
    "    }",
    "}",
    "",
  ].join("\n");
}

function pvcPod(
  namespace: string,
  name: string,
  image: string,
  uid: number,
  script: string,
): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: { app: name } },
    spec: {
      ...podSpecBase(uid, false),
      restartPolicy: "Never",
      containers: [
        container(name, image, uid, script, {
          volumeMounts: [{ name: "data", mountPath: PVC_MOUNT }],
        }),
      ],
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: PVC_NAME } }],
    },
  };
}

/** The pod that reads the writer's token back, applied once the writer is deleted. */
export function pvcReader(
  workload: Workload,
  options: { image?: string; uid?: number } = {},
): V1Pod {
  return pvcPod(
    workload.namespace,
    PVC_READER,
    options.image ?? DEFAULT_VERIFY_IMAGE,
    options.uid ?? DEFAULT_VERIFY_UID,
    `cat ${PVC_MOUNT}/${PVC_FILE}`,
  );
}

export function renderWorkload(options: WorkloadOptions): Workload {
  const namespace = verifyNamespace(options.suffix);
  const image = options.image ?? DEFAULT_VERIFY_IMAGE;
  const uid = options.uid ?? DEFAULT_VERIFY_UID;
  if (!Number.isInteger(uid) || uid <= 0) {
    throw new Error(`verify: uid must be a positive integer (runAsNonRoot), not ${uid}`);
  }
  const hostNetwork = options.hostNetwork ?? false;
  const replicas = hostNetwork ? 1 : (options.replicas ?? DEFAULT_WEB_REPLICAS);
  if (!hostNetwork && (!Number.isInteger(replicas) || replicas < 2)) {
    throw new Error(
      `verify: replicas must be an integer of at least 2 (pod to pod and the endpoint change need two), not ${replicas}`,
    );
  }
  const parts = new Set(options.parts ?? WORKLOAD_PARTS);
  const secretValue = options.secretValue ?? `s3cret-${options.suffix}`;
  const pvcToken = options.pvcToken ?? `token-${options.suffix}`;
  if (!/^[A-Za-z0-9._-]+$/.test(pvcToken)) {
    throw new Error(
      `verify: the PVC token goes into a shell command; "${pvcToken}" must be [A-Za-z0-9._-]`,
    );
  }
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
  // Each replica serves its pod name, from the downward API: a hostNetwork pod's hostname is the
  // node's, so /etc/hostname would not tell the replicas apart.
  const prepare = container(
    INIT_CONTAINER,
    image,
    uid,
    `cp ${CONFIG_DIR}/index.html ${SERVE_DIR}/index.html && echo '${INIT_MARKER}' > ${SERVE_DIR}/${INIT_MARKER_FILE} && echo "$${POD_NAME_ENV}" > ${SERVE_DIR}${HOSTNAME_PATH} && echo '${INIT_LOG_LINE}'`,
    {
      env: [{ name: POD_NAME_ENV, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
      volumeMounts: [
        { name: "content", mountPath: CONFIG_DIR, readOnly: true },
        { name: "www", mountPath: SERVE_DIR },
      ],
    },
  );

  const webPort = { name: "http", port: SERVICE_PORT, targetPort: "http", protocol: "TCP" };
  const services = {
    web: {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: WEB_SERVICE, namespace },
      spec: { type: "ClusterIP", selector: labels, ports: [webPort] },
    },
    nodePort: {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: NODEPORT_SERVICE, namespace },
      // No fixed nodePort: the API server allocates a free one, which the check reads back.
      spec: { type: "NodePort", selector: labels, ports: [webPort] },
    },
  } satisfies { web: V1Service; nodePort: V1Service };

  const probeLabels = { app: DNS_PROBE };
  const udpService = {
    configMap: {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: DNS_PROBE_CONFIG_MAP, namespace },
      data: { Corefile: dnsProbeCorefile() },
    },
    deployment: {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: DNS_PROBE, namespace, labels: probeLabels },
      spec: {
        replicas: 1,
        selector: { matchLabels: probeLabels },
        template: {
          metadata: { labels: probeLabels },
          spec: {
            ...podSpecBase(uid, hostNetwork),
            containers: [
              {
                name: "coredns",
                image: options.dnsImage ?? DEFAULT_DNS_IMAGE,
                imagePullPolicy: "Never",
                // As kube-system's CoreDNS Deployment does: the image's entrypoint is coredns.
                args: ["-conf", "/etc/coredns/Corefile"],
                securityContext: lockedDown(uid),
                ports: [
                  { name: "dns", containerPort: DNS_PROBE_PORT, protocol: "UDP" },
                  { name: "ready", containerPort: DNS_PROBE_READY_PORT, protocol: "TCP" },
                ],
                volumeMounts: [{ name: "corefile", mountPath: "/etc/coredns", readOnly: true }],
                readinessProbe: {
                  httpGet: { path: "/ready", port: DNS_PROBE_READY_PORT },
                  periodSeconds: 1,
                  timeoutSeconds: 2,
                  failureThreshold: 3,
                },
              },
            ],
            volumes: [{ name: "corefile", configMap: { name: DNS_PROBE_CONFIG_MAP } }],
          },
        },
      },
    },
    service: {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: DNS_PROBE, namespace },
      spec: {
        type: "ClusterIP",
        selector: probeLabels,
        ports: [{ name: "dns", port: 53, targetPort: DNS_PROBE_PORT, protocol: "UDP" }],
      },
    },
  } satisfies { configMap: V1ConfigMap; deployment: V1Deployment; service: V1Service };

  const pvc = {
    claim: {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: PVC_NAME, namespace },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "16Mi" } } },
    },
    writer: pvcPod(
      namespace,
      PVC_WRITER,
      image,
      uid,
      `echo ${pvcToken} > ${PVC_MOUNT}/${PVC_FILE}`,
    ),
  } satisfies { claim: V1PersistentVolumeClaim; writer: V1Pod };

  return {
    namespace,
    indexHtml,
    secretValue,
    replicas,
    pvcToken,
    hostNetwork,
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
          replicas,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              ...podSpecBase(uid, hostNetwork),
              // A deleted replica keeps serving until SIGKILL (httpd as PID 1 ignores SIGTERM). Two
              // seconds is one more than the issue gives a Service proxy to follow an endpoint
              // change, so the endpoint-change check fails a proxy slower than that, not a fast
              // one that lost a race against the kill.
              terminationGracePeriodSeconds: 2,
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
              ...podSpecBase(uid, hostNetwork),
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
          ...podSpecBase(uid, hostNetwork),
          containers: [
            container("client", image, uid, "echo client up; exec sleep 3600", {
              volumeMounts: [{ name: "scratch", mountPath: CLIENT_SCRATCH }],
            }),
          ],
          volumes: [{ name: "scratch", emptyDir: {} }],
        },
      },
      ...(parts.has("services") ? { services } : {}),
      ...(parts.has("udpService") ? { udpService } : {}),
      ...(parts.has("pvc") ? { pvc } : {}),
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
  const { namespace, configMap, secret, deployment, job, client, services, udpService, pvc } =
    workload.objects;
  return {
    namespace: toYaml([namespace]),
    rest: toYaml([
      configMap,
      secret,
      deployment,
      job,
      client,
      ...(services === undefined ? [] : [services.web, services.nodePort]),
      ...(udpService === undefined
        ? []
        : [udpService.configMap, udpService.deployment, udpService.service]),
      ...(pvc === undefined ? [] : [pvc.claim, pvc.writer]),
    ]),
  };
}
