import { join } from "node:path";
import type { NodeLayout } from "../node/layout.js";

/**
 * The names of every certificate, key and kubeconfig a node uses. Pure: the PKI writer creates
 * exactly these files and the component flags point at them, so both read them from here. The
 * names are kubeadm's (`/etc/kubernetes/pki`), so kubeadm's documentation applies to each file.
 */
export interface PkiFiles {
  /** The cluster CA: signs the API server's, the kubelet's and every client certificate. */
  readonly caCert: string;
  readonly caKey: string;
  /** The API server's serving certificate. */
  readonly apiServerCert: string;
  readonly apiServerKey: string;
  /** The client certificate the API server shows the kubelet (logs, exec, port-forward). */
  readonly apiServerKubeletClientCert: string;
  readonly apiServerKubeletClientKey: string;
  /** A CA of its own for the aggregation layer's requestheader authentication. */
  readonly frontProxyCaCert: string;
  readonly frontProxyCaKey: string;
  /** The client certificate the API server shows aggregated API servers; CN front-proxy-client. */
  readonly frontProxyClientCert: string;
  readonly frontProxyClientKey: string;
  /** Service account token signing key pair. */
  readonly serviceAccountKey: string;
  readonly serviceAccountPub: string;
  /**
   * The kubelet's serving certificate, signed by the cluster CA, so the API server can verify the
   * kubelet (--kubelet-certificate-authority). Its SANs must hold the node's IP and name.
   */
  readonly kubeletServingCert: string;
  readonly kubeletServingKey: string;
}

export interface KubeconfigFiles {
  /** system:masters; what `sandkube kubectl` and the merged ~/.kube/config use. */
  readonly admin: string;
  /** CN system:node:<nodeName>, O system:nodes: the Node authorizer and NodeRestriction need both. */
  readonly kubelet: string;
  /** CN system:kube-controller-manager. */
  readonly controllerManager: string;
  /** CN system:kube-scheduler. */
  readonly scheduler: string;
  /** CN system:kube-proxy: the Service proxy, whichever runs. */
  readonly kubeProxy: string;
}

/** The CN the API server accepts requestheader client certificates from. */
export const FRONT_PROXY_CLIENT_CN = "front-proxy-client";

export function pkiFiles(layout: Pick<NodeLayout, "pkiDir">): PkiFiles {
  const at = (name: string): string => join(layout.pkiDir, name);
  return {
    caCert: at("ca.crt"),
    caKey: at("ca.key"),
    apiServerCert: at("apiserver.crt"),
    apiServerKey: at("apiserver.key"),
    apiServerKubeletClientCert: at("apiserver-kubelet-client.crt"),
    apiServerKubeletClientKey: at("apiserver-kubelet-client.key"),
    frontProxyCaCert: at("front-proxy-ca.crt"),
    frontProxyCaKey: at("front-proxy-ca.key"),
    frontProxyClientCert: at("front-proxy-client.crt"),
    frontProxyClientKey: at("front-proxy-client.key"),
    serviceAccountKey: at("sa.key"),
    serviceAccountPub: at("sa.pub"),
    kubeletServingCert: at("kubelet.crt"),
    kubeletServingKey: at("kubelet.key"),
  };
}

export function kubeconfigFiles(layout: Pick<NodeLayout, "kubeconfigDir">): KubeconfigFiles {
  const at = (name: string): string => join(layout.kubeconfigDir, name);
  return {
    admin: at("admin.conf"),
    kubelet: at("kubelet.conf"),
    controllerManager: at("controller-manager.conf"),
    scheduler: at("scheduler.conf"),
    kubeProxy: at("kube-proxy.conf"),
  };
}
