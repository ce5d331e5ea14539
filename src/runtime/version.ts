export const RUNTIME_VERSION = "0.1.0";
export const OCI_VERSION = "1.2.0";
