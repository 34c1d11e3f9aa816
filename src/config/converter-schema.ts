// The converter's section of the configuration file (`converter:`): its event sources,
// its queue, its rescans and how it runs conversions. Part of configSchema, so one
// file configures the webhook and the converter and the rules are shared.
export const converterSchema = {
  type: "object", additionalProperties: false, default: {},
  properties: {
    mode: {
      description: "inprocess: convert in the converter's process; job: one Kubernetes Job per conversion.",
      enum: ["inprocess", "job"], default: "inprocess",
    },
    concurrency: { description: "Conversions at once (in job mode: active Jobs at once).", type: "integer", minimum: 1, maximum: 64, default: 2 },
    maxQueued: { description: "Conversions waiting at most; past it a registry's event is answered 503 and retried.", type: "integer", minimum: 1, maximum: 1000000, default: 1000 },
    maxAttempts: { type: "integer", minimum: 1, maximum: 20, default: 5 },
    retryBackoffSeconds: { description: "First retry delay, doubled per attempt.", type: "number", minimum: 0.01, default: 2 },
    retryBackoffMaxSeconds: { type: "number", minimum: 0.01, default: 300 },
    maxBodyBytes: { description: "Largest event body accepted (413 above).", type: "integer", minimum: 1024, maximum: 16777216, default: 1048576 },
    rescanIntervalSeconds: { description: "Scan the registries this often for missing or stale conversions (also at start); 0: only at start.", type: "integer", minimum: 0, default: 3600 },
    scanRequestsPerSecond: { description: "Registry API requests per second per registry during a scan.", type: "number", minimum: 0.1, maximum: 1000, default: 10 },
    recentLimit: { description: "Conversions listed by /conversions.", type: "integer", minimum: 1, maximum: 10000, default: 200 },
    ownUsers: {
      description: "Registry users whose pushes are the converter's own (the loop guard ignores their events).",
      type: "array", items: { type: "string", minLength: 1 }, default: [],
    },
    sources: {
      description: "Event senders: each gets POST /events/<name> and its own shared secret.",
      type: "array", default: [],
      items: {
        type: "object", additionalProperties: false, required: ["name", "kind", "secretFile"],
        properties: {
          name: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 },
          kind: { enum: ["distribution", "harbor"] },
          header: { description: "Header carrying the secret.", type: "string", pattern: "^[A-Za-z0-9-]+$", default: "Authorization" },
          secretFile: { description: "File holding the shared secret (a mounted Secret key).", type: "string", minLength: 1 },
          registry: { description: "Registry host the images are pulled by, when the event's host differs.", type: "string", minLength: 1 },
        },
      },
    },
    scan: {
      description: "Registries to rescan; repositories: the list to use when _catalog is refused (TCR, ECR).",
      type: "array", default: [],
      items: {
        type: "object", additionalProperties: false, required: ["registry"],
        properties: {
          registry: { type: "string", minLength: 1 },
          repositories: { type: "array", items: { type: "string", minLength: 1 } },
        },
      },
    },
    job: {
      type: "object", additionalProperties: false, default: {},
      properties: {
        image: { description: "Image of the conversion Job (apparate itself).", type: "string", default: "" },
        namespace: { description: "Namespace of the Jobs (the converter's own).", type: "string", default: "" },
        serviceAccountName: { type: "string", default: "" },
        ttlSecondsAfterFinished: { type: "integer", minimum: 0, default: 600 },
        backoffLimit: { type: "integer", minimum: 0, maximum: 10, default: 2 },
        activeDeadlineSeconds: { type: "integer", minimum: 1, default: 3600 },
        cpuRequest: { type: "string", default: "500m" },
        memoryRequest: { type: "string", default: "256Mi" },
        memoryLimit: { type: "string", default: "512Mi" },
        ephemeralStorage: { description: "Ephemeral storage request and limit of a conversion.", type: "string", default: "2Gi" },
        configMap: { description: "ConfigMap with the configuration file, mounted in the Job.", type: "string", default: "" },
        credentialsSecret: { description: "Secret with a docker config JSON with push rights, mounted in the Job.", type: "string", default: "" },
        registryCaConfigMap: { description: "ConfigMap with the registry CA bundle, mounted in the Job where registry.caFile points.", type: "string", default: "" },
        imagePullSecrets: { description: "Pull secrets of the Job's image.", type: "array", items: { type: "string", minLength: 1 }, default: [] },
        waitSeconds: { description: "How long the converter waits for one Job before deleting it; 0: activeDeadlineSeconds + 60.", type: "integer", minimum: 0, default: 0 },
      },
    },
  },
} as const;
