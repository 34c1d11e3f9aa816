// The pod every admission benchmark reviews: a realistic Deployment pod (3 containers,
// an init container, labels, env, probes), three of its images on the test registry.
export function benchPod(reg: string, tagSuffix = "") {
  return {
    apiVersion: "v1", kind: "Pod",
    metadata: { generateName: "shop-7f9d6c5b8-", namespace: "default", labels: { app: "shop", tier: "web", "pod-template-hash": "7f9d6c5b8" }, annotations: { "prometheus.io/scrape": "true" } },
    spec: {
      initContainers: [{ name: "migrate", image: `${reg}/shop/migrate:2.3.1${tagSuffix}`, command: ["/bin/migrate", "--up"], env: [{ name: "DB_HOST", value: "postgres" }] }],
      containers: [
        { name: "web", image: `${reg}/shop/web:2.3.1${tagSuffix}`, ports: [{ containerPort: 8080 }], env: [{ name: "MODE", value: "production" }, { name: "LOG_LEVEL", value: "info" }, { name: "CACHE_URL", value: "redis://cache:6379" }], resources: { requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "512Mi" } }, readinessProbe: { httpGet: { path: "/ready", port: 8080 } } },
        { name: "worker", image: `${reg}/shop/worker:2.3.1${tagSuffix}`, args: ["--queue", "orders"], env: [{ name: "CONCURRENCY", value: "8" }] },
        { name: "envoy", image: "envoyproxy/envoy:v1.30.1", ports: [{ containerPort: 9901 }] },
      ],
      serviceAccountName: "shop",
      imagePullSecrets: [{ name: "regcred" }],
    },
  };
}
