/**
 * The default StorageClass: rancher's local-path-provisioner, as its deploy/local-path-storage.yaml
 * (v0.0.37) sets it up, with volumes under the node's data dir and every image local.
 */
import { join } from "node:path";
import type {
  KubernetesObject,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1Deployment,
  V1Namespace,
  V1Pod,
  V1Role,
  V1RoleBinding,
  V1ServiceAccount,
  V1StorageClass,
} from "@kubernetes/client-node";
import { stringify } from "yaml";
import type { AddonParams } from "./manifests.js";

export const LOCAL_PATH_NAMESPACE = "local-path-storage";
export const LOCAL_PATH_DEPLOYMENT = "local-path-provisioner";
export const LOCAL_PATH_SERVICE_ACCOUNT = "local-path-provisioner-service-account";
export const LOCAL_PATH_CONFIG_MAP = "local-path-config";
export const LOCAL_PATH_STORAGE_CLASS = "local-path";
export const LOCAL_PATH_PROVISIONER = "rancher.io/local-path";
export const DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class";
/**
 * The provisioner's own health server (main.go DefaultHealthPort), in the pod's netns. v0.0.37 is
 * the first release that has it (no FlagHealthPort in v0.0.36's main.go); the probes need it.
 */
const HEALTH_PORT = 8080;
const CONFIG_DIR = "/etc/config/";

/** Where every PersistentVolume's directory is made: one folder per volume, under the data dir. */
export function localPathStorageDir(dataDir: string): string {
  return join(dataDir, "storage");
}

/** The provisioner's config.json: every node (there is one) keeps volumes under the storage dir. */
export function localPathConfig(dataDir: string): string {
  return `${JSON.stringify(
    {
      nodePathMap: [
        { node: "DEFAULT_PATH_FOR_NON_LISTED_NODES", paths: [localPathStorageDir(dataDir)] },
      ],
    },
    null,
    2,
  )}\n`;
}

// The provisioner runs these in a helper pod with VOL_DIR set to the volume's folder
// (provisioner.go createHelperPod), the folder's parent mounted from the node.
const SETUP_SCRIPT = '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n';
const TEARDOWN_SCRIPT = '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n';

/**
 * The helper pod template. The provisioner refuses templates with volumes, host namespaces, a
 * node name or a service account of their own (util.go validateHelperPodTemplate) and adds those
 * itself, so this holds only the image and scheduling.
 */
export function helperPodTemplate(busyboxImage: string): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "helper-pod" },
    spec: {
      priorityClassName: "system-node-critical",
      tolerations: [
        { key: "node.kubernetes.io/disk-pressure", operator: "Exists", effect: "NoSchedule" },
      ],
      containers: [{ name: "helper-pod", image: busyboxImage, imagePullPolicy: "Never" }],
    },
  };
}

export function localPathObjects(params: AddonParams): KubernetesObject[] {
  const namespace: V1Namespace = {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: LOCAL_PATH_NAMESPACE },
  };
  const serviceAccount: V1ServiceAccount = {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: LOCAL_PATH_SERVICE_ACCOUNT, namespace: LOCAL_PATH_NAMESPACE },
  };
  const subjects = [
    { kind: "ServiceAccount", name: LOCAL_PATH_SERVICE_ACCOUNT, namespace: LOCAL_PATH_NAMESPACE },
  ];
  // Helper pods are created and deleted only in the provisioner's own namespace.
  const role: V1Role = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: "local-path-provisioner-role", namespace: LOCAL_PATH_NAMESPACE },
    rules: [
      {
        apiGroups: [""],
        resources: ["pods"],
        verbs: ["get", "list", "watch", "create", "patch", "update", "delete"],
      },
    ],
  };
  const roleBinding: V1RoleBinding = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "local-path-provisioner-bind", namespace: LOCAL_PATH_NAMESPACE },
    roleRef: {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: "local-path-provisioner-role",
    },
    subjects,
  };
  const clusterRole: V1ClusterRole = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: "local-path-provisioner-role" },
    rules: [
      {
        apiGroups: [""],
        resources: ["nodes", "persistentvolumeclaims", "configmaps", "pods", "pods/log"],
        verbs: ["get", "list", "watch"],
      },
      {
        apiGroups: [""],
        resources: ["persistentvolumes"],
        verbs: ["get", "list", "watch", "create", "patch", "update", "delete"],
      },
      { apiGroups: [""], resources: ["events"], verbs: ["create", "patch"] },
      {
        apiGroups: ["storage.k8s.io"],
        resources: ["storageclasses"],
        verbs: ["get", "list", "watch"],
      },
    ],
  };
  const clusterRoleBinding: V1ClusterRoleBinding = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "local-path-provisioner-bind" },
    roleRef: {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: "local-path-provisioner-role",
    },
    subjects,
  };
  const configMap: V1ConfigMap = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: LOCAL_PATH_CONFIG_MAP, namespace: LOCAL_PATH_NAMESPACE },
    data: {
      "config.json": localPathConfig(params.dataDir),
      setup: SETUP_SCRIPT,
      teardown: TEARDOWN_SCRIPT,
      "helperPod.yaml": stringify(helperPodTemplate(params.images.busybox)),
    },
  };
  const selector = { app: LOCAL_PATH_DEPLOYMENT };
  const deployment: V1Deployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: LOCAL_PATH_DEPLOYMENT, namespace: LOCAL_PATH_NAMESPACE },
    spec: {
      replicas: 1,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: selector },
        spec: {
          serviceAccountName: LOCAL_PATH_SERVICE_ACCOUNT,
          containers: [
            {
              name: "local-path-provisioner",
              image: params.images.localPathProvisioner,
              // Built locally; no registry is reachable from most sandboxes.
              imagePullPolicy: "Never",
              command: [
                "local-path-provisioner",
                "--debug",
                "start",
                "--config",
                `${CONFIG_DIR}config.json`,
              ],
              ports: [{ name: "health", containerPort: HEALTH_PORT, protocol: "TCP" }],
              startupProbe: {
                httpGet: { path: "/health", port: "health" },
                initialDelaySeconds: 5,
                periodSeconds: 5,
                failureThreshold: 12,
              },
              livenessProbe: {
                httpGet: { path: "/health", port: "health" },
                initialDelaySeconds: 10,
                periodSeconds: 10,
              },
              readinessProbe: {
                httpGet: { path: "/ready", port: "health" },
                initialDelaySeconds: 5,
                periodSeconds: 5,
              },
              volumeMounts: [{ name: "config-volume", mountPath: CONFIG_DIR }],
              env: [
                {
                  name: "POD_NAMESPACE",
                  valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } },
                },
                // Lets the provisioner reload config.json and helperPod.yaml when the ConfigMap
                // changes (provisioner.go refreshHelperPod).
                { name: "CONFIG_MOUNT_PATH", value: CONFIG_DIR },
                { name: "HEALTH_PORT", value: String(HEALTH_PORT) },
              ],
            },
          ],
          volumes: [{ name: "config-volume", configMap: { name: LOCAL_PATH_CONFIG_MAP } }],
        },
      },
    },
  };
  const storageClass: V1StorageClass = {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: {
      name: LOCAL_PATH_STORAGE_CLASS,
      annotations: { [DEFAULT_CLASS_ANNOTATION]: "true" },
    },
    provisioner: LOCAL_PATH_PROVISIONER,
    // A volume is a folder on the node; binding waits for the pod so the claim is made where the
    // pod is scheduled (the provisioner needs a node name: provisioner.go createHelperPod).
    volumeBindingMode: "WaitForFirstConsumer",
    reclaimPolicy: "Delete",
  };
  return [
    namespace,
    serviceAccount,
    role,
    roleBinding,
    clusterRole,
    clusterRoleBinding,
    configMap,
    deployment,
    storageClass,
  ];
}
