// The configuration file's schema. One JSON Schema drives validation, defaults
// and the error messages (ajv), and the TypeScript type (json-schema-to-ts); the
// chart's values.schema.json agrees with it (test/unit/config-schema-agreement.test.ts).
import type { FromSchema } from "json-schema-to-ts";
import { converterSchema } from "./converter-schema.js";
export const configSchema = {
  $id: "https://apparate.io/schemas/config.json",
  type: "object",
  additionalProperties: false,
  properties: {
    namespaces: {
      description: "Namespaces whose pods are handled; a list or the comma string \"default,sa1,sa2\".",
      anyOf: [
        { type: "array", items: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 } },
        { type: "string", pattern: "^\\s*[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\s*,\\s*[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\s*$" },
      ],
      default: ["default"],
    },
    namespaceLabel: {
      description: "Namespaces with this label (key=value) are handled too.",
      type: "string", pattern: "^[^=]+=[^=]*$", default: "apparate.io/inject=enabled",
    },
    releaseNamespace: { description: "apparate's own namespace: never mutated.", type: "string", default: "apparate" },
    acceleration: {
      type: "object", additionalProperties: false, default: {},
      properties: {
        enabled: { type: "boolean", default: true },
        tagSuffix: { type: "string", pattern: "^[A-Za-z0-9_.-]{1,64}$", default: "-apparate" },
        registries: {
          description: "Registries whose images may be tag-swapped; \"*\" allows every registry.",
          type: "array", items: { type: "string", minLength: 1 }, default: [],
        },
        rules: {
          description: "Optional rules: registry namespace, repository regex, tag regex. No rule = every repository.",
          type: "array", default: [],
          items: {
            type: "object", additionalProperties: false,
            properties: {
              name: { type: "string" },
              registry: { type: "string" },
              namespace: { type: "string" },
              repository: { type: "string", format: "regex" },
              tag: { type: "string", format: "regex" },
            },
          },
        },
        ephemeralContainers: { type: "boolean", default: false },
        digestPinned: {
          description: "Accelerate digest-pinned images through the conversion link the converter records (repo@sha256:X -> repo@sha256:Y, repo:tag@sha256:X -> repo:tag-apparate@sha256:Y). Off by default: signature-verifying admission checks the digest the pod finally runs.",
          type: "boolean", default: false,
        },
        placement: {
          type: "object", additionalProperties: false, default: {},
          properties: {
            mode: { enum: ["required", "preferred", "none"], default: "required" },
            // A label key and value, as the API server validates a nodeSelector (apimachinery
            // content/kube.go IsLabelKey, IsValidLabelValue); the prefix's 253 limit is checked in config.ts.
            nodeLabelKey: { type: "string", minLength: 1, maxLength: 317, pattern: "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$", default: "cloud.tencent.com/apparate" },
            nodeLabelValue: { type: "string", pattern: "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$", default: "true" },
            weight: { type: "integer", minimum: 1, maximum: 100, default: 100 },
          },
        },
      },
    },
    rewrite: {
      type: "object", additionalProperties: false, default: {},
      properties: {
        registries: {
          description: "Registry host rewrite in the pod, e.g. quay.io: quay.tencentcloudcr.com.",
          type: "object", additionalProperties: { type: "string", minLength: 1 }, default: {},
        },
      },
    },
    registry: {
      type: "object", additionalProperties: false, default: {},
      properties: {
        requestTimeoutMs: { type: "integer", minimum: 10, maximum: 30000, default: 1000 },
        positiveTtlSeconds: { type: "integer", minimum: 0, default: 600 },
        negativeTtlSeconds: { type: "integer", minimum: 0, default: 30 },
        unknownBackoffSeconds: { type: "integer", minimum: 0, default: 5 },
        ttlJitter: { type: "number", minimum: 0, maximum: 0.5, default: 0.1 },
        cacheMaxEntries: { type: "integer", minimum: 1, default: 100000 },
        breakerFailures: { type: "integer", minimum: 1, default: 5 },
        breakerCooldownSeconds: { type: "integer", minimum: 1, default: 30 },
        plainHttp: { description: "Registries reached over plain HTTP (host[:port]).", type: "array", items: { type: "string" }, default: [] },
        caFile: { type: "string" },
        dockerConfigFile: { description: "Docker config JSON with credentials (the chart's imagePullSecretsCrs).", type: "string" },
        usePodPullSecrets: { type: "boolean", default: true },
        tokenRealms: {
          description: "Token services (host[:port], https) that may receive registry credentials besides each registry's own host and auth.docker.io for Docker Hub.",
          type: "array", items: { type: "string", minLength: 1 }, default: [],
        },
        allowPrivateNetworks: {
          description: "Registry hosts (host[:port]) or address ranges (CIDR) that \"*\" may reach on loopback, link-local or private addresses.",
          type: "array", items: { type: "string", minLength: 1 }, default: [],
        },
        maxConcurrentPerRegistry: { description: "Registry requests in flight per registry; more wait in a queue that never counts as a registry fault.", type: "integer", minimum: 1, maximum: 256, default: 8 },
        maxRegistryHosts: { description: "Registries whose breaker and token state are kept (least recently used dropped first).", type: "integer", minimum: 1, maximum: 1000000, default: 1000 },
        pullSecretNamespaces: { description: "With usePodPullSecrets: read pull secrets only in these namespaces (one informer each, so a namespaced Role suffices); empty reads them cluster-wide.", type: "array", items: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 }, default: [] },
      },
    },
    imageCache: {
      type: "object", additionalProperties: false, default: {},
      properties: {
        enabled: { type: "boolean", default: false },
        group: { type: "string", default: "eks.cloud.tencent.com" },
        version: { type: "string", default: "v1" },
        plural: { type: "string", default: "imagecaches" },
        readyPhase: { type: "string", default: "Ready" },
        matchMode: { enum: ["all", "most"], default: "all" },
        latestTag: { enum: ["match", "skip"], default: "match" },
        write: { enum: ["id", "auto"], default: "id" },
        events: { type: "boolean", default: true },
      },
    },
    observer: {
      description: "Pod start latency by acceleration mode (one replica at a time, by a Lease).",
      type: "object", additionalProperties: false, default: {},
      properties: {
        enabled: { type: "boolean", default: true },
        leaseName: { type: "string", pattern: "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", maxLength: 253, default: "apparate-observer" },
        leaseDurationSeconds: { type: "integer", minimum: 5, maximum: 300, default: 15 },
        graceSeconds: { description: "How long after Ready a pod is recorded, so that its kubelet events have arrived.", type: "integer", minimum: 0, maximum: 600, default: 10 },
        windowSize: { description: "Pod starts kept in memory for `apparate report`.", type: "integer", minimum: 1, maximum: 100000, default: 2000 },
      },
    },
    admission: {
      type: "object", additionalProperties: false, default: {},
      properties: {
        deadlineMs: { type: "integer", minimum: 50, maximum: 9000, default: 2000 },
        maxBodyBytes: { type: "integer", minimum: 1024, default: 3145728 },
        maxLookupsPerReview: { description: "Registry lookups one review may start; beyond it a container is left unchanged with a warning.", type: "integer", minimum: 1, maximum: 100000, default: 100 },
        maxConnections: { description: "Open connections the admission server accepts.", type: "integer", minimum: 1, default: 1000 },
        maxConnectionsPerSource: { description: "Open connections one client address may hold (more are closed before TLS); unset: a quarter of maxConnections.", type: "integer", minimum: 1 },
        maxReviewsPerSource: { description: "Reviews one client address may have in flight; more are allowed unchanged at once.", type: "integer", minimum: 1, maximum: 100000, default: 32 },
        largeReviewBytes: { description: "A review body larger than this (bytes) is worked on one at a time; small ones never wait behind it.", type: "integer", minimum: 1024, default: 262144 },
        clientAuth: {
          description: "Require a client certificate on the admission port, verified against caFile: for clusters that give the API server kubeconfig client credentials for webhooks (--admission-control-config-file).",
          type: "object", additionalProperties: false, default: {},
          properties: {
            enabled: { type: "boolean", default: false },
            caFile: { description: "PEM bundle of the CAs that sign the API server's client certificate.", type: "string", minLength: 1 },
            allowedNames: { description: "Subject common names accepted; empty: any certificate the CA signed.", type: "array", items: { type: "string", minLength: 1 }, default: [] },
          },
        },
        trustedSources: {
          description: "Client addresses or ranges (CIDR) exempt from the per-address limits: the API server's. They also have maxConnections connections of their own that no other client can take.",
          type: "array", items: { type: "string", minLength: 1 }, default: [],
        },
        requestTimeoutMs: { description: "Time to receive one whole request (headers and body).", type: "integer", minimum: 1000, default: 10000 },
        idleTimeoutMs: { description: "A connection (or TLS handshake) with no traffic this long, before or during a request, is closed.", type: "integer", minimum: 1000, default: 10000 },
        keepAliveTimeoutMs: { description: "Idle time between requests on a kept-alive connection; above the API server's own idle timeout.", type: "integer", minimum: 1000, default: 75000 },
      },
    },
    converter: converterSchema,
  },
} as const;

/**
 * The file as written, after ajv has filled in the defaults: derived from the
 * schema above, so the two cannot drift apart. A property with a default is
 * present; one without (caFile, a rule's fields) is optional.
 */
export type RawConfig = FromSchema<typeof configSchema>;
export type AccelerationRule = RawConfig["acceleration"]["rules"][number];
