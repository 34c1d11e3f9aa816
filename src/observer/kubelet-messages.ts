// Kubelet's image events, parsed (pure). Kubelet reports pulls only as Event
// messages (reason "Pulled"/"Pulling"); its own pull histogram has neither image nor
// pod, so the messages are the one per-pod source. The forms, from
// kubernetes/kubernetes pkg/kubelet/images/image_manager.go across releases:
//   older:  Successfully pulled image "X" in 1.234567891s            (one Go duration, waiting included)
//   1.28:   Successfully pulled image "X" in 796ms (1.594s including waiting)
//   1.30+:  Successfully pulled image "X" in 796ms (1.594s including waiting). Image size: 12345 bytes.
//   always: Container image "X" already present on machine           (no pull: counted apart)
//           Pulling image "X"

export type KubeletImageMessage =
  | { kind: "pulled"; image: string; /** the pull itself */ pullSeconds: number; /** from the kubelet's request, queueing included; absent on older kubelets */ waitingSeconds?: number; sizeBytes?: number }
  | { kind: "present"; image: string }
  | { kind: "pulling"; image: string };

const UNIT_SECONDS: Readonly<Record<string, number>> = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, "µs": 1e-6, "μs": 1e-6, ns: 1e-9 };

/**
 * Go's time.Duration.String() ("1h2m3.5s", "796ms", "1.5µs", "0s") in seconds;
 * undefined for anything else. Hand-written: no npm library reads Go's format exactly.
 */
export function parseGoDuration(text: string): number | undefined {
  const m = /^(-?)((?:\d+(?:\.\d+)?(?:h|m(?!s)|s|ms|us|µs|μs|ns))+)$/u.exec(text);
  if (!m) return undefined;
  let total = 0;
  for (const part of m[2]!.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|μs|ns)/gu)) total += Number(part[1]) * UNIT_SECONDS[part[2]!]!;
  return m[1] ? -total : total;
}

// Go's %q of an image reference: a double-quoted string with backslash escapes.
const QUOTED = String.raw`"((?:[^"\\]|\\.)*)"`;
const PULLED = new RegExp(String.raw`^Successfully pulled image ${QUOTED} in (\S+?)(?: \((\S+) including waiting\))?(?:\. Image size: (\d+) bytes\.?)?$`);
const PRESENT = new RegExp(`^Container image ${QUOTED} already present on machine$`);
const PULLING = new RegExp(`^Pulling image ${QUOTED}$`);

function unquote(s: string): string {
  try { return JSON.parse(`"${s}"`) as string; } catch { return s; }
}

/** The image event a kubelet message describes; undefined for any other message. */
export function parseKubeletMessage(reason: string | undefined, message: string | undefined): KubeletImageMessage | undefined {
  if (!message) return undefined;
  const text = message.trim();
  if (reason === "Pulled") {
    const p = PULLED.exec(text);
    if (p) {
      const pullSeconds = parseGoDuration(p[2]!);
      if (pullSeconds === undefined || pullSeconds < 0) return undefined;
      const waiting = p[3] !== undefined ? parseGoDuration(p[3]) : undefined;
      return {
        kind: "pulled", image: unquote(p[1]!), pullSeconds,
        ...(waiting !== undefined && waiting >= 0 ? { waitingSeconds: waiting } : {}),
        ...(p[4] !== undefined ? { sizeBytes: Number(p[4]) } : {}),
      };
    }
    const a = PRESENT.exec(text);
    if (a) return { kind: "present", image: unquote(a[1]!) };
    return undefined;
  }
  if (reason === "Pulling") {
    const p = PULLING.exec(text);
    if (p) return { kind: "pulling", image: unquote(p[1]!) };
  }
  return undefined;
}

/** Image size buckets for labels (bounded); "unknown" when the kubelet did not say. */
export const SIZE_BUCKETS = ["0-10MB", "10-100MB", "100-500MB", "500MB-1GB", "1-5GB", "5GB+", "unknown"] as const;
export type SizeBucket = (typeof SIZE_BUCKETS)[number];

const MB = 1_000_000;
export function sizeBucket(bytes: number | undefined): SizeBucket {
  if (bytes === undefined || !Number.isFinite(bytes) || bytes < 0) return "unknown";
  if (bytes < 10 * MB) return "0-10MB";
  if (bytes < 100 * MB) return "10-100MB";
  if (bytes < 500 * MB) return "100-500MB";
  if (bytes < 1000 * MB) return "500MB-1GB";
  if (bytes < 5000 * MB) return "1-5GB";
  return "5GB+";
}
