// Sends a sample AdmissionReview to the webhook and prints the pod before and after.
import { readFileSync } from "node:fs";
import { Agent, request } from "undici";
import jsonpatch from "fast-json-patch";
import { stringify } from "yaml";

const [url, caFile, reg] = process.argv.slice(2);
const pod = {
  apiVersion: "v1", kind: "Pod",
  metadata: { generateName: "hello-", namespace: "default", labels: { app: "hello" } },
  spec: {
    containers: [
      { name: "hello", image: `${reg}/demo/hello:1.0` },
      { name: "exporter", image: "quay.io/prometheus/node-exporter:v1.8.0" },
      { name: "not-converted", image: `${reg}/demo/other:2.0` },
    ],
  },
};
const review = {
  apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview",
  request: { uid: "4b1f5e0a-demo-4c3b-9d6e-000000000001", kind: { group: "", version: "v1", kind: "Pod" },
    resource: { group: "", version: "v1", resource: "pods" }, namespace: "default", operation: "CREATE", object: pod },
};
const res = await request(url, {
  method: "POST", body: JSON.stringify(review), headers: { "content-type": "application/json" },
  dispatcher: new Agent({ connect: { ca: readFileSync(caFile) } }),
});
const body = await res.body.json();
const patch = body.response.patch ? JSON.parse(Buffer.from(body.response.patch, "base64").toString()) : [];
const after = jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument;
console.log("--- pod before\n" + stringify(pod));
console.log("--- JSON patch (HTTP " + res.statusCode + ", allowed: " + body.response.allowed + ")\n" + JSON.stringify(patch, null, 2));
console.log("--- warnings\n" + (body.response.warnings ?? []).map((w) => "  " + w).join("\n"));
console.log("--- pod after\n" + stringify(after));
