// The HTTP status of a failed Kubernetes API call. client-node 1.x throws
// ApiException (code = the status); anything else (a network error) has none.
import { ApiException } from "@kubernetes/client-node";

export function apiStatus(err: unknown): number | undefined {
  return err instanceof ApiException ? (err as ApiException<unknown>).code : undefined;
}

export const isNotFound = (err: unknown) => apiStatus(err) === 404;
export const isConflict = (err: unknown) => apiStatus(err) === 409;
export const isAlreadyExists = isConflict;
