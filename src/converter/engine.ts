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
