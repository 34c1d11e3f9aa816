// Real-looking pods for planner and server tests.
import type { PodLike } from "../../src/mutate/pod.js";

export const REG = "registry.example.com:5000";

export function webPod(over: Partial<PodLike["spec"]> = {}, meta: PodLike["metadata"] = {}): PodLike {
  return {
    apiVersion: "v1", kind: "Pod",
    metadata: { generateName: "web-6b7f9c-", namespace: "default", labels: { app: "web", "pod-template-hash": "6b7f9c" }, ...meta },
    spec: {
      initContainers: [{ name: "migrate", image: `${REG}/team/migrate:v3`, command: ["/migrate"] }],
      containers: [
        { name: "app", image: `${REG}/team/web:1.4.2`, env: [{ name: "MODE", value: "prod" }], ports: [{ containerPort: 8080 }] },
        { name: "proxy", image: "envoyproxy/envoy:v1.30.1" },
        { name: "metrics", image: "quay.io/prometheus/node-exporter:v1.8.0" },
      ],
      restartPolicy: "Always",
      ...over,
    },
  };
}
