import { describe, expect, it } from "vitest";
import { ApiException } from "@kubernetes/client-node";
import { apiStatus, isConflict, isNotFound } from "../../src/kube/status.js";

describe("Kubernetes API status of an error", () => {
  it("reads the code of client-node's ApiException; a network error or a look-alike object has none", () => {
    expect(apiStatus(new ApiException(404, "not found", {}, {}))).toBe(404);
    expect(isConflict(new ApiException(409, "conflict", {}, {}))).toBe(true);
    expect(isNotFound(new ApiException(409, "conflict", {}, {}))).toBe(false);
    expect(apiStatus(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBeUndefined();
    expect(apiStatus({ code: 404 })).toBeUndefined();
  });
});
