/**
 * The one place that loads @peculiar/x509: its dependency injection (tsyringe) needs the
 * reflect-metadata polyfill loaded before it is evaluated, as its README says, and it must sign
 * with Node's own WebCrypto (Node 20 has no global `crypto` in every context).
 */
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto);

export { x509 };
