import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiException, type V1Deployment, type V1Pod } from "@kubernetes/client-node";
import {
  apiErrorMessage,
  deploymentAvailable,
  describeObject,
  explainDeployment,
  explainPod,
} from "../../src/addons/apply.js";

// The statuses below are shaped as kube-apiserver and kubelet 1.34 report them (field names and
// reasons from k8s.io/api and kubelet's images/pod_workers); the functions under test read only
// these fields.

function deployment(status: V1Deployment["status"], generation = 1): V1Deployment {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "coredns", namespace: "kube-system", generation },
    spec: {
      replicas: 1,
      selector: { matchLabels: { "k8s-app": "kube-dns" } },
      template: { spec: { containers: [] } },
    },
    status,
  };
}

const AVAILABLE = {
  observedGeneration: 1,
  replicas: 1,
  updatedReplicas: 1,
  readyReplicas: 1,
  availableReplicas: 1,
  conditions: [
    { type: "Available", status: "True", reason: "MinimumReplicasAvailable" },
    { type: "Progressing", status: "True", reason: "NewReplicaSetAvailable" },
  ],
};

test("a Deployment is available only when its latest spec runs on every replica", () => {
  assert.equal(deploymentAvailable(deployment(AVAILABLE)), true);
  assert.equal(deploymentAvailable(deployment(undefined)), false, "no status yet");
  assert.equal(deploymentAvailable(deployment(AVAILABLE, 2)), false, "spec not yet observed");
  assert.equal(
    deploymentAvailable(deployment({ ...AVAILABLE, updatedReplicas: 0 })),
    false,
    "old pods still serving",
  );
  assert.equal(
    deploymentAvailable(deployment({ ...AVAILABLE, availableReplicas: 0 })),
    false,
    "nothing available",
  );
  assert.equal(
    deploymentAvailable(
      deployment({
        ...AVAILABLE,
        conditions: [{ type: "Available", status: "False", reason: "MinimumReplicasUnavailable" }],
      }),
    ),
    false,
  );
});

test("a pod's explanation names each container's waiting reason and its last exit", () => {
  const pod: V1Pod = {
    metadata: { name: "coredns-7d9c-abcde" },
    status: {
      phase: "Pending",
      conditions: [{ type: "PodScheduled", status: "True" }],
      containerStatuses: [
        {
          name: "coredns",
          image: "sandkube.local/coredns:v1.13.2",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: {
            waiting: {
              reason: "ErrImageNeverPull",
              message:
                'Container image "sandkube.local/coredns:v1.13.2" is not present with pull policy of Never',
            },
          },
        },
      ],
    },
  };
  assert.equal(
    explainPod(pod),
    'pod coredns-7d9c-abcde Pending: container coredns waiting (ErrImageNeverPull): Container image "sandkube.local/coredns:v1.13.2" is not present with pull policy of Never',
  );

  const crashing: V1Pod = {
    metadata: { name: "coredns-7d9c-fghij" },
    status: {
      phase: "Running",
      containerStatuses: [
        {
          name: "coredns",
          image: "x",
          imageID: "",
          ready: false,
          restartCount: 3,
          state: { waiting: { reason: "CrashLoopBackOff", message: "back-off 40s" } },
          lastState: {
            terminated: {
              exitCode: 1,
              reason: "Error",
              message: "listen udp 10.244.0.1:53: bind: address already in use\n",
            },
          },
        },
      ],
    },
  };
  assert.equal(
    explainPod(crashing),
    "pod coredns-7d9c-fghij Running: container coredns waiting (CrashLoopBackOff): back-off 40s; container coredns last exited with status 1 (listen udp 10.244.0.1:53: bind: address already in use)",
  );

  const unready: V1Pod = {
    metadata: { name: "lpp-1" },
    status: {
      phase: "Running",
      containerStatuses: [
        {
          name: "local-path-provisioner",
          image: "x",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: { running: { startedAt: new Date(0) } },
        },
      ],
    },
  };
  assert.match(explainPod(unready), /container local-path-provisioner running, not ready/);
});

test("an unschedulable pod says why the scheduler refused it", () => {
  const pod: V1Pod = {
    metadata: { name: "coredns-x" },
    status: {
      phase: "Pending",
      conditions: [
        {
          type: "PodScheduled",
          status: "False",
          reason: "Unschedulable",
          message:
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
        },
      ],
    },
  };
  assert.equal(
    explainPod(pod),
    "pod coredns-x Pending: not scheduled: Unschedulable 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
  );
});

test("a Deployment's explanation carries its failing conditions and every pod", () => {
  const stuck = deployment({
    observedGeneration: 1,
    replicas: 1,
    updatedReplicas: 1,
    unavailableReplicas: 1,
    conditions: [
      {
        type: "Available",
        status: "False",
        reason: "MinimumReplicasUnavailable",
        message: "Deployment does not have minimum availability.",
      },
      { type: "Progressing", status: "True", reason: "ReplicaSetUpdated" },
      {
        type: "ReplicaFailure",
        status: "True",
        reason: "FailedCreate",
        message:
          'pods "coredns-1" is forbidden: no PriorityClass with name system-cluster-critical',
      },
    ],
  });
  assert.equal(
    explainDeployment("kube-system/coredns", stuck, []),
    'Deployment kube-system/coredns has 0/1 available; Available: Deployment does not have minimum availability.; ReplicaFailure: pods "coredns-1" is forbidden: no PriorityClass with name system-cluster-critical; no pods',
  );
  assert.equal(
    explainDeployment("kube-system/coredns", undefined, []),
    "Deployment kube-system/coredns does not exist",
  );
  const withPod = explainDeployment("kube-system/coredns", stuck, [
    { metadata: { name: "coredns-1" }, status: { phase: "Pending" } },
  ]);
  assert.match(withPod, /; pod coredns-1 Pending$/);
});

test("objects and apiserver refusals are described in words", () => {
  assert.equal(
    describeObject({ kind: "Deployment", metadata: { name: "coredns", namespace: "kube-system" } }),
    "Deployment kube-system/coredns",
  );
  assert.equal(
    describeObject({ kind: "StorageClass", metadata: { name: "local-path" } }),
    "StorageClass local-path",
  );
  const status = JSON.stringify({
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    message:
      'Service "kube-dns" is invalid: spec.clusterIP: Invalid value: "10.96.0.10": provided IP is already allocated',
    reason: "Invalid",
    code: 422,
  });
  assert.equal(
    apiErrorMessage(new ApiException(422, "Unsuccessful HTTP Request", status, {})),
    'HTTP 422: Service "kube-dns" is invalid: spec.clusterIP: Invalid value: "10.96.0.10": provided IP is already allocated',
  );
  assert.equal(
    apiErrorMessage(new ApiException(503, "Unsuccessful HTTP Request", "upstream down\n", {})),
    "HTTP 503: upstream down",
  );
  assert.equal(apiErrorMessage(new Error("connect ECONNREFUSED")), "connect ECONNREFUSED");
});
