// Self-managed TLS: one Secret holds the CA, the serving certificate and the CA
// bundle; every replica converges on it (create-if-absent, 409 -> read the winner).
// The MutatingWebhookConfiguration's caBundle is patched at start and re-patched
// whenever someone resets it. Serving certificates are renewed with a third of
// their life left; the CA rolls over with both CAs in the bundle for an overlap
// window, and the bundle is always published before a certificate it must verify.
import {
  AdmissionregistrationV1Api, CoreV1Api, PatchStrategy, setHeaderOptions,
  type KubeConfig, type V1MutatingWebhookConfiguration, type V1Secret,
} from "@kubernetes/client-node";
import forge from "node-forge";
import { ApparateError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import { startInformer, type ManagedInformer } from "../kube/informer.js";
import { certificateValidity, createCA, issueServing, serviceDnsNames, type KeyPairPem } from "./certificates.js";
import type { ServingMaterial } from "./settings.js";
import { isConflict, isNotFound } from "../kube/status.js";

export class TlsError extends ApparateError {}

export interface TlsManagerOptions {
  /** managed: apparate creates and rotates the Secret; external: the Secret is the user's, only read and watched. */
  mode?: "managed" | "external";
  namespace: string;
  secretName: string;
  serviceName: string;
  webhookConfigName: string;
  caValidityMs?: number;
  certValidityMs?: number;
  /** Renew when less than this fraction of the life is left. */
  renewFraction?: number;
  /** How long both CAs stay in the bundle before the serving cert moves to the new CA, and again before the old CA is dropped. */
  overlapMs?: number;
  checkIntervalMs?: number;
  now?: () => number;
  onChange: (m: ServingMaterial, caBundle: string) => void;
}

const DAY = 86_400_000;
const ANN_ROLLOVER = "apparate.io/ca-rollover-started";
const ANN_OLD_CA = "apparate.io/previous-ca";

interface Material { ca: KeyPairPem; serving: KeyPairPem; bundle: string; rolloverStarted?: number; previousCa?: string }

const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, "base64").toString("utf8") : "");

function fromSecret(s: V1Secret): Material | undefined {
  const d = s.data ?? {};
  const ca = { cert: unb64(d["ca.crt"]), key: unb64(d["ca.key"]) };
  const serving = { cert: unb64(d["tls.crt"]), key: unb64(d["tls.key"]) };
  if (!ca.cert || !ca.key || !serving.cert || !serving.key) return undefined;
  const started = Number(s.metadata?.annotations?.[ANN_ROLLOVER] ?? "");
  const prev = unb64(s.metadata?.annotations?.[ANN_OLD_CA]);
  return { ca, serving, bundle: unb64(d["ca-bundle.crt"]) || ca.cert, ...(Number.isFinite(started) && started > 0 ? { rolloverStarted: started } : {}), ...(prev ? { previousCa: prev } : {}) };
}

export class TlsManager {
  private readonly core: CoreV1Api;
  private readonly admission: AdmissionregistrationV1Api;
  private readonly now: () => number;
  private current?: Material;
  private informers: ManagedInformer<never>[] = [];
  private timer?: NodeJS.Timeout;
  private busy: Promise<void> = Promise.resolve();

  constructor(private readonly kc: KubeConfig, private readonly opts: TlsManagerOptions, private readonly logger: Logger) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.admission = kc.makeApiClient(AdmissionregistrationV1Api);
    this.now = opts.now ?? Date.now;
  }

  get material(): ServingMaterial | undefined { return this.current?.serving; }
  get caBundle(): string | undefined { return this.current?.bundle; }
  get caCert(): string | undefined { return this.current?.ca.cert; }

  /** Converges once; serialised so that timers and watch events never race each other. */
  reconcile(): Promise<void> {
    this.busy = this.busy.then(() => this.reconcileOnce()).catch((err: unknown) => {
      this.logger.error({ err }, "TLS reconcile failed; will retry");
    });
    return this.busy;
  }

  async start(): Promise<void> {
    await this.reconcile();
    if (!this.current) throw new TlsError("tls-bootstrap", `could not create or read Secret ${this.opts.namespace}/${this.opts.secretName}`);
    const { namespace, secretName, webhookConfigName } = this.opts;
    this.informers.push(startInformer<V1Secret>(this.kc, "tls-secret", `/api/v1/namespaces/${namespace}/secrets`,
      () => this.core.listNamespacedSecret({ namespace, fieldSelector: `metadata.name=${secretName}` }), this.logger, {
        fieldSelector: `metadata.name=${secretName}`,
        onSetup: (i) => { i.on("update", () => void this.reconcile()); i.on("delete", () => void this.reconcile()); },
      }) as never);
    this.informers.push(startInformer<V1MutatingWebhookConfiguration>(this.kc, "webhook-configuration", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
      () => this.admission.listMutatingWebhookConfiguration({ fieldSelector: `metadata.name=${webhookConfigName}` }), this.logger, {
        fieldSelector: `metadata.name=${webhookConfigName}`,
        onSetup: (i) => {
          const check = (m: V1MutatingWebhookConfiguration) => { if (this.current && !this.bundleCurrent(m, this.current.bundle)) void this.reconcile(); };
          i.on("add", check); i.on("update", check);
        },
      }) as never);
    // Anything that changed between the first reconcile and the watches starting is caught here.
    await Promise.all(this.informers.map((i) => i.whenSynced(10_000)));
    await this.reconcile();
    if (this.opts.checkIntervalMs) {
      this.timer = setInterval(() => void this.reconcile(), this.opts.checkIntervalMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const i of this.informers) i.stop();
  }

  private get caValidity() { return this.opts.caValidityMs ?? 5 * 365 * DAY; }
  private get certValidity() { return this.opts.certValidityMs ?? 365 * DAY; }
  private get overlap() { return this.opts.overlapMs ?? DAY; }

  /**
   * Less than `renewFraction` of the configured life left. Measured against the
   * configured validity, not notBefore, which is back-dated 5 minutes for clock skew.
   */
  private needsRenewal(pem: string, validityMs: number): boolean {
    const { notAfter } = certificateValidity(pem);
    return notAfter - this.now() < validityMs * (this.opts.renewFraction ?? 1 / 3);
  }

  private issue(ca: KeyPairPem): KeyPairPem {
    return issueServing(ca, serviceDnsNames(this.opts.serviceName, this.opts.namespace), this.certValidity / DAY, this.now());
  }

  private async reconcileOnce(): Promise<void> {
    const { namespace, secretName } = this.opts;
    if (this.opts.mode === "external") {
      const secret = await this.core.readNamespacedSecret({ name: secretName, namespace });
      const d = secret.data ?? {};
      const serving = { cert: unb64(d["tls.crt"]), key: unb64(d["tls.key"]) };
      const ca = unb64(d["ca.crt"]);
      if (!serving.cert || !serving.key || !ca) throw new TlsError("tls-secret-incomplete", `Secret ${namespace}/${secretName} needs tls.crt, tls.key and ca.crt`, secretName);
      await this.publish({ ca: { cert: ca, key: "" }, serving, bundle: ca });
      return;
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      let secret: V1Secret | undefined;
      try {
        secret = await this.core.readNamespacedSecret({ name: secretName, namespace });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      if (!secret) {
        // A Secret deleted under a running webhook is written back from memory: a new
        // CA would fail every handshake until the API server saw the new caBundle.
        // (To force a new CA, delete the Secret while the webhook is scaled to zero.)
        const kept = this.current && this.current.ca.key !== "" ? this.current : undefined;
        const ca = kept ? kept.ca : createCA(caName(this.now()), this.caValidity / DAY, this.now());
        const m: Material = kept ?? { ca, serving: this.issue(ca), bundle: ca.cert };
        try {
          await this.core.createNamespacedSecret({ namespace, body: this.toSecret(m) });
          this.logger.info({ secret: `${namespace}/${secretName}` }, kept ? "recreated the deleted webhook TLS Secret from memory" : "created webhook CA and serving certificate");
        } catch (err) {
          if (isConflict(err)) continue; // another replica won: read what it wrote
          throw err;
        }
        await this.publish(m);
        return;
      }
      const m = fromSecret(secret);
      const next = m ? this.plan(m) : undefined;
      if (!m || next) {
        const target = next ?? (() => { const ca = createCA(caName(this.now()), this.caValidity / DAY, this.now()); return { ca, serving: this.issue(ca), bundle: ca.cert }; })();
        // The bundle that verifies the new serving certificate is published before the certificate is.
        await this.patchCaBundle(target.bundle);
        try {
          await this.core.replaceNamespacedSecret({ name: secretName, namespace, body: { ...this.toSecret(target), metadata: { ...this.toSecret(target).metadata, resourceVersion: secret.metadata!.resourceVersion! } } });
        } catch (err) {
          if (isConflict(err)) continue;
          throw err;
        }
        await this.publish(target);
        return;
      }
      await this.publish(m);
      return;
    }
    throw new TlsError("tls-conflict", `Secret ${namespace}/${secretName} kept changing under us`);
  }

  /** What the Secret should become, or undefined when it is fine as it is. */
  private plan(m: Material): Material | undefined {
    const now = this.now();
    if (m.rolloverStarted !== undefined && m.previousCa) {
      // Rollover in progress: bundle = new CA + previous CA.
      const age = now - m.rolloverStarted;
      const servingFromNew = signedBy(m.serving.cert, m.ca.cert);
      if (!servingFromNew && age >= this.overlap) return { ...m, serving: this.issue(m.ca) };
      if (servingFromNew && age >= 2 * this.overlap) return { ca: m.ca, serving: m.serving, bundle: m.ca.cert };
      return undefined;
    }
    if (this.needsRenewal(m.ca.cert, this.caValidity)) {
      const ca = createCA(caName(now), this.caValidity / DAY, now);
      // Phase 1: trust both; keep serving from the old CA until the bundle has propagated.
      return { ca, serving: m.serving, bundle: ca.cert + m.ca.cert, rolloverStarted: now, previousCa: m.ca.cert };
    }
    if (this.needsRenewal(m.serving.cert, this.certValidity)) return { ...m, serving: this.issue(m.ca) };
    return undefined;
  }

  private toSecret(m: Material): V1Secret {
    return {
      apiVersion: "v1", kind: "Secret", type: "kubernetes.io/tls",
      metadata: {
        name: this.opts.secretName, namespace: this.opts.namespace,
        labels: { "app.kubernetes.io/part-of": "apparate", "app.kubernetes.io/component": "webhook-tls" },
        annotations: {
          ...(m.rolloverStarted !== undefined ? { [ANN_ROLLOVER]: String(m.rolloverStarted) } : {}),
          ...(m.previousCa ? { [ANN_OLD_CA]: b64(m.previousCa) } : {}),
        },
      },
      data: { "ca.crt": b64(m.ca.cert), "ca.key": b64(m.ca.key), "tls.crt": b64(m.serving.cert), "tls.key": b64(m.serving.key), "ca-bundle.crt": b64(m.bundle) },
    };
  }

  private bundleCurrent(cfg: V1MutatingWebhookConfiguration, bundle: string): boolean {
    return (cfg.webhooks ?? []).every((w) => w.clientConfig?.caBundle === b64(bundle));
  }

  private async patchCaBundle(bundle: string): Promise<void> {
    let cfg: V1MutatingWebhookConfiguration;
    try {
      cfg = await this.admission.readMutatingWebhookConfiguration({ name: this.opts.webhookConfigName });
    } catch (err) {
      if (isNotFound(err)) { this.logger.warn({ name: this.opts.webhookConfigName }, "webhook configuration not found; caBundle not patched yet"); return; }
      throw err;
    }
    if (this.bundleCurrent(cfg, bundle)) return;
    const ops = (cfg.webhooks ?? []).map((_w, i) => ({ op: "replace" as const, path: `/webhooks/${i}/clientConfig/caBundle`, value: b64(bundle) }));
    await this.admission.patchMutatingWebhookConfiguration({ name: this.opts.webhookConfigName, body: ops }, setHeaderOptions("Content-Type", PatchStrategy.JsonPatch));
    this.logger.info({ name: this.opts.webhookConfigName }, "patched caBundle");
  }

  private async publish(m: Material): Promise<void> {
    await this.patchCaBundle(m.bundle);
    const changed = !this.current || this.current.serving.cert !== m.serving.cert || this.current.bundle !== m.bundle;
    this.current = m;
    if (changed) this.opts.onChange(m.serving, m.bundle);
  }
}

/** Each CA gets its own subject: during a rollover two CAs share the bundle, and TLS picks the issuer by name. */
function caName(now: number): string {
  return `apparate webhook CA ${new Date(now).toISOString().replace(/\.\d+Z$/, "Z")}`;
}

function signedBy(certPem: string, caPem: string): boolean {
  try {
    return forge.pki.certificateFromPem(caPem).verify(forge.pki.certificateFromPem(certPem));
  } catch {
    return false; // another issuer: forge throws on an issuer mismatch
  }
}
