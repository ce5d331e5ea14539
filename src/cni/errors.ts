/**
 * CNI error codes. 1-11 and 50-51 are the spec's well-known codes (containernetworking/cni SPEC.md,
 * "Error"); 100 and above are this plugin's own, as the spec reserves them for plugins.
 */
export const CNI_ERROR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  /** STATUS: the plugin cannot serve ADD now. */
  pluginNotAvailable: 50,
  /** The kernel lacks what a pod's own network needs (veth, statfs on a netns file). */
  kernelCannotConnectPods: 100,
  addressesExhausted: 101,
  linkSetupFailed: 102,
  checkFailed: 103,
  linkRemovalFailed: 104,
} as const;

export type CniErrorCode = (typeof CNI_ERROR)[keyof typeof CNI_ERROR];

/** A failure the runtime sees as the spec's error object: {cniVersion, code, msg, details}. */
export class CniError extends Error {
  constructor(
    readonly code: CniErrorCode,
    message: string,
    readonly details?: string,
  ) {
    super(message);
    this.name = "CniError";
  }
}

export interface CniErrorJson {
  readonly cniVersion: string;
  readonly code: number;
  readonly msg: string;
  readonly details?: string;
}

export function errorJson(cniVersion: string, error: CniError): CniErrorJson {
  return {
    cniVersion,
    code: error.code,
    msg: error.message,
    ...(error.details === undefined || error.details === "" ? {} : { details: error.details }),
  };
}
