import type { Config } from "../config/config.js";
import { convertImage, isPermanentConversionError } from "../convert/image.js";
import { recordLinksFor } from "../registry/referrers.js";
import type { RegistryStack } from "../registry/stack.js";
import { PermanentFailure } from "./queue.js";

// What the converter asks of the conversion engine (src/convert, `apparate convert`):
// make <tag><suffix> of one source at one digest, idempotently. In job mode the same
// request becomes a Kubernetes Job running `apparate convert`.

export interface ConversionRequest {
  registry: string;
  repository: string;
  tag: string;
  /** The source digest the event or the scan saw: the engine converts exactly this. */
  digest: string;
  /** The accelerated tag to write (tag + acceleration.tagSuffix). */
  targetTag: string;
}

export interface ConversionResult {
  result: "converted" | "up-to-date";
  /** The accelerated manifest's digest. */
  digest?: string;
  bytesIn: number;
  bytesOut: number;
}

export type ConvertImage = (req: ConversionRequest, signal: AbortSignal) => Promise<ConversionResult>;

/** A prefetch list learned for domain/path (src/converter/learned-prefetch.ts), or undefined. */
export type PrefetchFor = (repository: string) => Promise<readonly string[] | undefined>;

/** The in-process engine: src/convert's convertImage with the configured credentials. */
export function engineFor(stack: RegistryStack, config: Config, prefetchFor?: PrefetchFor): ConvertImage {
  return async (req, signal) => {
    const source = { domain: req.registry, path: req.repository, tag: req.tag, digest: req.digest };
    try {
      const prefetch = await prefetchFor?.(`${req.registry}/${req.repository}`);
      const r = await convertImage({
        ...(prefetch?.length ? { prefetch } : {}),
        client: stack.client, source, target: { domain: req.registry, path: req.repository, tag: req.targetTag },
        tagSuffix: config.acceleration.tagSuffix,
        credentials: (ref) => stack.keyring?.lookup(ref.domain, ref.path)[0],
        signal,
      });
      // X -> Y recorded as a referrer of X, so that digest-pinned pods can follow it (issue 27).
      if (r.digest) await recordLinksFor(stack.client, source, stack.keyring?.lookup(source.domain, source.path)[0], r.digest, signal);
      return { result: r.result === "up-to-date" ? "up-to-date" : "converted", ...(r.digest ? { digest: r.digest } : {}), bytesIn: r.bytesIn, bytesOut: r.bytesOut };
    } catch (err) {
      // Another attempt cannot fix these: the queue records them failed at once.
      if (isPermanentConversionError(err)) throw new PermanentFailure(err.message, { cause: err });
      throw err;
    }
  };
}
