// A cluster at scale for the observer (issue 25): pods and nodes as the API server
// shows them (a Deployment's pod with the service-account volume, default
// tolerations, statuses; a node with its images, conditions and capacity), loaded
// into the API stand-in in bulk, and observer replicas in their own processes
// (observer-replica.ts) with the chart's heap flag. The integration test and
// `npm run bench -- observer` both use it.
import { type ChildProcess, fork } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KubeApiStandIn } from "./kube-api-standin.js";
import type { ReplicaArgs, ReplicaStatus } from "./observer-replica.js";

const HERE = dirname(fileURLToPath(import.meta.url));
export const NODE_LABEL = "cloud.tencent.com/apparate";

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");

/**
 * Pod i of a Deployment-made workload, created at t0 (ms). "starting": scheduled, containers
 * running, not Ready yet (kept by the observer until it records it); "ready": Ready 20 s after t0.
 */
export function clusterPod(i: number, t0: number, state: "starting" | "ready", namespaces = 200, nodes = 5000): Record<string, any> {
  const ns = `team-${i % namespaces}`;
  const app = `svc-${Math.floor(i / 10) % 997}`;
  const hash = (i * 2654435761 >>> 0).toString(16).padStart(8, "0").slice(0, 10);
  const name = `${app}-${hash}-${(i % 100_000).toString(36).padStart(5, "x")}`;
  const node = `node-${i % nodes}`;
  const at = (s: number) => iso(t0 + s * 1000);
  const ready = state === "ready";
  const image = `registry.example.com/${ns}/${app}:1.${i % 7}.0`;
  return {
    metadata: {
      name, namespace: ns, uid: `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`, creationTimestamp: at(0), generateName: `${app}-${hash}-`,
      labels: { app, "pod-template-hash": hash, "app.kubernetes.io/name": app, "app.kubernetes.io/part-of": ns },
      annotations: { "apparate.io/actions": "accelerated=1,placement=preferred", "kubectl.kubernetes.io/restartedAt": at(-86_400) },
      ownerReferences: [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: `${app}-${hash}`, uid: `11111111-0000-4000-8000-${(i % 99_991).toString(16).padStart(12, "0")}`, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      nodeName: node, serviceAccountName: "default", restartPolicy: "Always", terminationGracePeriodSeconds: 30, dnsPolicy: "ClusterFirst", schedulerName: "default-scheduler", priority: 0, enableServiceLinks: true, preemptionPolicy: "PreemptLowerPriority",
      containers: [
        {
          name: "app", image: `${image}-apparate`, imagePullPolicy: "IfNotPresent", ports: [{ containerPort: 8080, protocol: "TCP", name: "http" }],
          env: [{ name: "LOG_LEVEL", value: "info" }, { name: "POD_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } }],
          resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } },
          readinessProbe: { httpGet: { path: "/healthz", port: 8080, scheme: "HTTP" }, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
          volumeMounts: [{ name: "kube-api-access-abcde", readOnly: true, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" }],
          terminationMessagePath: "/dev/termination-log", terminationMessagePolicy: "File",
        },
        {
          name: "proxy", image: "registry.example.com/platform/proxy:2.1.0", imagePullPolicy: "IfNotPresent",
          resources: { requests: { cpu: "10m", memory: "32Mi" } },
          volumeMounts: [{ name: "kube-api-access-abcde", readOnly: true, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" }],
          terminationMessagePath: "/dev/termination-log", terminationMessagePolicy: "File",
        },
      ],
      volumes: [{ name: "kube-api-access-abcde", projected: { defaultMode: 420, sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
        { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
        { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
      ] } }],
      tolerations: [
        { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
        { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
      ],
      securityContext: {},
    },
    status: {
      phase: "Running", qosClass: "Burstable", hostIP: `10.0.${(i % 5000) >> 8}.${i % 256}`, podIP: `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
      podIPs: [{ ip: `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}` }], startTime: at(1),
      conditions: [
        { type: "PodReadyToStartContainers", status: "True", lastProbeTime: null, lastTransitionTime: at(3) },
        { type: "Initialized", status: "True", lastProbeTime: null, lastTransitionTime: at(1) },
        { type: "Ready", status: ready ? "True" : "False", lastProbeTime: null, lastTransitionTime: at(ready ? 20 : 1), ...(ready ? {} : { reason: "ContainersNotReady", message: "containers with unready status: [app]" }) },
        { type: "ContainersReady", status: ready ? "True" : "False", lastProbeTime: null, lastTransitionTime: at(ready ? 20 : 1), ...(ready ? {} : { reason: "ContainersNotReady", message: "containers with unready status: [app]" }) },
        { type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: at(1) },
      ],
      containerStatuses: [
        { name: "app", image: `${image}-apparate`, imageID: `${image}-apparate@sha256:${"a".repeat(64)}`, containerID: `containerd://${"c".repeat(64)}`, ready, restartCount: 0, started: true, state: { running: { startedAt: at(9) } }, lastState: {} },
        { name: "proxy", image: "registry.example.com/platform/proxy:2.1.0", imageID: `registry.example.com/platform/proxy@sha256:${"b".repeat(64)}`, containerID: `containerd://${"d".repeat(64)}`, ready: true, restartCount: 0, started: true, state: { running: { startedAt: at(8) } }, lastState: {} },
      ],
    },
  };
}

/** Node i, as the API server shows a worker node (40 images, conditions, capacity); `labelled` carries the apparate label. */
export function clusterNode(i: number, labelled: boolean): Record<string, any> {
  const name = `node-${i}`;
  const images = Array.from({ length: 40 }, (_, k) => ({
    names: [`registry.example.com/team-${k % 200}/svc-${(i + k) % 997}@sha256:${k.toString(16).padStart(64, "e")}`, `registry.example.com/team-${k % 200}/svc-${(i + k) % 997}:1.${k % 7}.0`],
    sizeBytes: 20_000_000 + k * 1_000_003,
  }));
  const conditions = ["MemoryPressure", "DiskPressure", "PIDPressure"].map((type) => ({ type, status: "False", lastHeartbeatTime: "2026-01-10T10:00:00Z", lastTransitionTime: "2026-01-01T00:00:00Z", reason: `KubeletHas${type === "PIDPressure" ? "SufficientPID" : `No${type}`}`, message: `kubelet has no ${type}` }));
  conditions.push({ type: "Ready", status: "True", lastHeartbeatTime: "2026-01-10T10:00:00Z", lastTransitionTime: "2026-01-01T00:00:00Z", reason: "KubeletReady", message: "kubelet is posting ready status" });
  return {
    metadata: {
      name,
      labels: {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "m5.xlarge", "topology.kubernetes.io/region": "eu-west-1", "topology.kubernetes.io/zone": `eu-west-1${"abc"[i % 3]}`,
        ...(labelled ? { [NODE_LABEL]: "true" } : {}),
      },
      annotations: { "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true", "csi.volume.kubernetes.io/nodeid": `{"ebs.csi.aws.com":"i-${i.toString(16).padStart(17, "0")}"}` },
    },
    spec: { podCIDR: `10.${64 + (i >> 8)}.${i & 255}.0/24`, providerID: `aws:///eu-west-1a/i-${i.toString(16).padStart(17, "0")}` },
    status: {
      capacity: { cpu: "4", memory: "16101484Ki", pods: "58", "ephemeral-storage": "104845292Ki" },
      allocatable: { cpu: "3920m", memory: "15083628Ki", pods: "58", "ephemeral-storage": "95551679124" },
      conditions,
      addresses: [{ type: "InternalIP", address: `10.0.${i >> 8}.${i & 255}` }, { type: "Hostname", address: name }],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: { machineID: "f".repeat(32), systemUUID: "ec2" + "0".repeat(29), bootID: "b".repeat(36), kernelVersion: "6.1.0-28-cloud-amd64", osImage: "Debian GNU/Linux 12 (bookworm)", containerRuntimeVersion: "containerd://1.7.24", kubeletVersion: "v1.31.4", kubeProxyVersion: "v1.31.4", operatingSystem: "linux", architecture: "amd64" },
      images,
    },
  };
}

/** Loads `pods` pods and `nodes` nodes (every other one labelled) into the stand-in. */
export function loadCluster(api: KubeApiStandIn, opts: { pods: number; nodes: number; state: "starting" | "ready"; t0: number }): void {
  api.load("nodes", Array.from({ length: opts.nodes }, (_, i) => clusterNode(i, i % 2 === 0)) as never);
  const namespaces = Array.from({ length: 200 }, (_, i) => ({ metadata: { name: `team-${i}` } }));
  api.load("namespaces", namespaces as never);
  const batch = 10_000;
  for (let i = 0; i < opts.pods; i += batch) {
    api.load("pods", Array.from({ length: Math.min(batch, opts.pods - i) }, (_, k) => clusterPod(i + k, opts.t0, opts.state, 200, opts.nodes)) as never);
  }
}

export interface Replica {
  identity: string;
  child: ChildProcess;
  /** Undefined while running; how it ended otherwise (a heap exhausted: signal SIGABRT or code 134). */
  ended(): string | undefined;
  status(): Promise<ReplicaStatus>;
  /** Polls status() until `pred` holds; fails at once if the replica has died. */
  until(pred: (s: ReplicaStatus) => boolean, timeoutMs: number, what: string): Promise<ReplicaStatus>;
  /** SIGKILL: the replica dies without releasing the Lease. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** An observer replica in its own process, with the chart's --max-old-space-size=256. */
export async function startReplica(api: KubeApiStandIn, identity: string, opts: Partial<Omit<ReplicaArgs, "server" | "identity">> = {}): Promise<Replica> {
  const args: ReplicaArgs = { server: api.url, identity, namespace: "apparate-system", leaseDurationSeconds: 5, graceSeconds: 1, namespaces: ["default"], ...opts };
  const child = fork(join(HERE, "observer-replica.ts"), [JSON.stringify(args)], {
    execArgv: ["--import", "tsx", "--max-old-space-size=256", "--expose-gc"], stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let end: string | undefined;
  const exited = new Promise<number | null>((r) => child.once("exit", (code, signal) => { end = `exited (code ${code}, signal ${signal})`; r(code); }));
  const answer = <T>(pick: (m: any) => T | undefined): Promise<T> => new Promise((resolve, reject) => {
    const on = (m: unknown) => { const v = pick(m); if (v !== undefined) { child.off("message", on); resolve(v); } };
    child.on("message", on);
    void exited.then((code) => { child.off("message", on); reject(new Error(`replica ${identity} exited (${code})`)); });
  });
  await answer((m) => (m?.ready ? true : undefined));
  const status = async () => {
    if (end) throw new Error(`replica ${identity} ${end}`);
    const p = answer<ReplicaStatus>((m) => m?.status);
    child.send({ cmd: "status" }, () => undefined);
    return p;
  };
  return {
    identity, child, ended: () => end, status,
    until: async (pred, timeoutMs, what) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (end) throw new Error(`replica ${identity} ${end} while waiting for ${what}`);
        const s = await status().catch(() => undefined);
        if (s && pred(s)) return s;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    kill: async () => { child.kill("SIGKILL"); await exited; },
    stop: async () => { if (child.exitCode !== null || child.signalCode !== null) return; child.send({ cmd: "stop" }); await exited; },
  };
}
