// Image references after distribution/reference (ParseNormalizedNamed), written as a
// linear scanner instead of regular expressions: image strings come from users, and
// the upstream grammar turned into a JS regex backtracks exponentially on inputs such
// as "aaaa…!" (see research/webhook-anchors.md §4). No npm package is both safe and kept.
import { LRUCache } from "lru-cache";
import { ApparateError } from "../errors.js";

export class ImageReferenceError extends ApparateError {}

/** A parsed, normalised reference. `tag` is undefined when the input had none. */
export interface ImageReference {
  /** Registry host, with port when given; Docker Hub is `docker.io`. */
  readonly domain: string;
  /** Repository path inside the registry, `library/` added for Docker Hub official images. */
  readonly path: string;
  readonly tag?: string;
  readonly digest?: string;
}

export const DEFAULT_DOMAIN = "docker.io";
const LEGACY_DEFAULT_DOMAIN = "index.docker.io";
export const DEFAULT_TAG = "latest";
export const MAX_NAME_LENGTH = 255;
export const MAX_TAG_LENGTH = 128;
// Longest input worth parsing: a host (253-character DNS name, ":" and a 5-digit port) + "/" +
// path 255 + ":" + tag 128 + "@" + "sha512:" + 128 hex. Longer inputs are refused unparsed.
const MAX_DOMAIN_LENGTH = 253 + 1 + 5;
const MAX_INPUT_LENGTH = MAX_DOMAIN_LENGTH + 1 + MAX_NAME_LENGTH + 1 + MAX_TAG_LENGTH + 1 + 7 + 128;

const DIGEST_HEX_LENGTH: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

const isLower = (c: number) => c >= 97 && c <= 122;
const isUpper = (c: number) => c >= 65 && c <= 90;
const isDigit = (c: number) => c >= 48 && c <= 57;
const isLowerAlnum = (c: number) => isLower(c) || isDigit(c);
const isAlnum = (c: number) => isLower(c) || isUpper(c) || isDigit(c);
const isWord = (c: number) => isAlnum(c) || c === 95; /* _ */
const isHex = (c: number) => isDigit(c) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);

function fail(code: string, message: string, input: string): never {
  throw new ImageReferenceError(code, `invalid image reference ${JSON.stringify(input.length > 80 ? input.slice(0, 80) + "…" : input)}: ${message}`, input);
}

/** path-component := [a-z0-9]+ (([._]|__|[-]+) [a-z0-9]+)* */
function isPathComponent(s: string): boolean {
  const n = s.length;
  if (n === 0 || !isLowerAlnum(s.charCodeAt(0)) || !isLowerAlnum(s.charCodeAt(n - 1))) return false;
  let i = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (isLowerAlnum(c)) { i++; continue; }
    // A separator run: one ".", one or two "_", or any number of "-".
    if (c === 46) { i++; }
    else if (c === 95) { i += s.charCodeAt(i + 1) === 95 ? 2 : 1; }
    else if (c === 45) { while (s.charCodeAt(i) === 45) i++; }
    else return false;
    if (!isLowerAlnum(s.charCodeAt(i))) return false;
  }
  return true;
}

/** domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9] */
function isDomainComponent(s: string): boolean {
  const n = s.length;
  if (n === 0 || !isAlnum(s.charCodeAt(0)) || !isAlnum(s.charCodeAt(n - 1))) return false;
  for (let i = 1; i < n - 1; i++) {
    const c = s.charCodeAt(i);
    if (!isAlnum(c) && c !== 45) return false;
  }
  return true;
}

/** domain := (domain-name | IPv4 | "[" IPv6 "]") [":" port] */
export function isValidDomain(d: string): boolean {
  let port: string | undefined;
  if (d.startsWith("[")) {
    const close = d.indexOf("]");
    if (close < 0) return false;
    const inner = d.slice(1, close);
    if (inner.length === 0) return false;
    for (let i = 0; i < inner.length; i++) {
      const c = inner.charCodeAt(i);
      if (!isHex(c) && c !== 58 /* : */) return false;
    }
    const rest = d.slice(close + 1);
    if (rest === "") return true;
    if (!rest.startsWith(":")) return false;
    port = rest.slice(1);
  } else {
    const colon = d.indexOf(":");
    let host = d;
    if (colon >= 0) { host = d.slice(0, colon); port = d.slice(colon + 1); }
    if (!host.split(".").every(isDomainComponent)) return false;
  }
  if (port !== undefined) {
    if (port.length === 0 || port.length > 5) return false;
    for (let i = 0; i < port.length; i++) if (!isDigit(port.charCodeAt(i))) return false;
  }
  return true;
}

/** tag := [\w][\w.-]{0,127} */
export function isValidTag(t: string): boolean {
  if (t.length === 0 || t.length > MAX_TAG_LENGTH || !isWord(t.charCodeAt(0))) return false;
  for (let i = 1; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (!isWord(c) && c !== 46 && c !== 45) return false;
  }
  return true;
}

function checkDigest(dg: string, input: string): void {
  const colon = dg.indexOf(":");
  if (colon <= 0) fail("invalid-digest", "digest must be <algorithm>:<hex>", input);
  const algo = dg.slice(0, colon);
  const hex = dg.slice(colon + 1);
  // algorithm := [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*
  let expectLetter = true;
  for (let i = 0; i < algo.length; i++) {
    const c = algo.charCodeAt(i);
    if (expectLetter) {
      if (!isLower(c) && !isUpper(c)) fail("invalid-digest", "malformed digest algorithm", input);
      expectLetter = false;
    } else if (c === 45 || c === 95 || c === 43 || c === 46) expectLetter = true;
    else if (!isAlnum(c)) fail("invalid-digest", "malformed digest algorithm", input);
  }
  if (expectLetter) fail("invalid-digest", "malformed digest algorithm", input);
  const want = DIGEST_HEX_LENGTH[algo];
  if (want === undefined) fail("unsupported-digest", `unsupported digest algorithm ${JSON.stringify(algo)}`, input);
  if (hex.length !== want) fail("invalid-digest", `${algo} digest must have ${want} hex characters`, input);
  for (let i = 0; i < hex.length; i++) {
    const c = hex.charCodeAt(i);
    if (!isDigit(c) && !(c >= 97 && c <= 102)) fail("invalid-digest", "digest must be lowercase hex", input);
  }
}

function isAllHex64(s: string): boolean {
  if (s.length !== 64) return false;
  for (let i = 0; i < 64; i++) { const c = s.charCodeAt(i); if (!isDigit(c) && !(c >= 97 && c <= 102)) return false; }
  return true;
}

/**
 * Parses an image string the way Docker and containerd do (ParseNormalizedNamed):
 * adds `docker.io` and `library/`, maps `index.docker.io` to `docker.io`.
 * Keeps both tag and digest when both are given. Throws ImageReferenceError.
 */
export function parseReference(input: string): ImageReference {
  if (typeof input !== "string" || input.length === 0) fail("empty", "reference is empty", String(input ?? ""));
  if (input.length > MAX_INPUT_LENGTH) fail("too-long", `longer than ${MAX_INPUT_LENGTH} characters`, input);
  if (isAllHex64(input)) fail("hex-name", "a 64-character hexadecimal string is an image id, not a name", input);

  // Split off the domain first, as splitDockerDomain does.
  let domain: string;
  let remainder: string;
  const slash = input.indexOf("/");
  if (slash < 0) {
    domain = DEFAULT_DOMAIN;
    remainder = "library/" + input;
  } else {
    const first = input.slice(0, slash);
    const rest = input.slice(slash + 1);
    if (first === "localhost" || first.includes(".") || first.includes(":") || first.toLowerCase() !== first) {
      domain = first === LEGACY_DEFAULT_DOMAIN ? DEFAULT_DOMAIN : first;
      remainder = rest;
    } else {
      domain = DEFAULT_DOMAIN;
      remainder = input;
    }
    if (domain === DEFAULT_DOMAIN && !remainder.includes("/")) remainder = "library/" + remainder;
  }
  if (!isValidDomain(domain)) fail("invalid-format", `malformed registry host ${JSON.stringify(domain)}`, input);

  let digest: string | undefined;
  const at = remainder.indexOf("@");
  if (at >= 0) {
    digest = remainder.slice(at + 1);
    remainder = remainder.slice(0, at);
    checkDigest(digest, input);
  }
  let tag: string | undefined;
  const colon = remainder.indexOf(":");
  let path = remainder;
  if (colon >= 0) {
    tag = remainder.slice(colon + 1);
    path = remainder.slice(0, colon);
  }
  if (path.toLowerCase() !== path) fail("uppercase", "repository name must be lowercase", input);
  const components = path.split("/");
  for (const c of components) {
    if (!isPathComponent(c)) fail("invalid-format", `malformed repository path component ${JSON.stringify(c)}`, input);
  }
  if (tag !== undefined && !isValidTag(tag)) {
    fail("invalid-tag", tag.length > MAX_TAG_LENGTH ? `tag longer than ${MAX_TAG_LENGTH} characters` : `malformed tag ${JSON.stringify(tag)}`, input);
  }
  // distribution/reference v0.6 counts the path only, not the domain (reference_test.go).
  if (path.length > MAX_NAME_LENGTH) fail("name-too-long", `repository path longer than ${MAX_NAME_LENGTH} characters`, input);
  return { domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** `domain/path` */
export function repositoryName(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The fully qualified string: `domain/path[:tag][@digest]`. */
export function formatReference(ref: ImageReference): string {
  return repositoryName(ref) + (ref.tag !== undefined ? `:${ref.tag}` : "") + (ref.digest !== undefined ? `@${ref.digest}` : "");
}

/** The reference as Docker shows it: `docker.io/library/` dropped (FamiliarString). */
export function familiarString(ref: ImageReference): string {
  let name = repositoryName(ref);
  if (ref.domain === DEFAULT_DOMAIN) {
    name = ref.path;
    const rest = name.startsWith("library/") ? name.slice(8) : undefined;
    if (rest !== undefined && !rest.includes("/")) name = rest;
  }
  return name + (ref.tag !== undefined ? `:${ref.tag}` : "") + (ref.digest !== undefined ? `@${ref.digest}` : "");
}

/** The canonical key used for matching: digest references keep only the digest, others get `:latest`. */
export function canonicalKey(ref: ImageReference): string {
  if (ref.digest !== undefined) return `${repositoryName(ref)}@${ref.digest}`;
  return `${repositoryName(ref)}:${ref.tag ?? DEFAULT_TAG}`;
}

export function withTag(ref: ImageReference, tag: string): ImageReference {
  if (!isValidTag(tag)) throw new ImageReferenceError("invalid-tag", `tag ${JSON.stringify(tag)} is not a valid tag`, tag);
  return { domain: ref.domain, path: ref.path, tag, ...(ref.digest !== undefined ? { digest: ref.digest } : {}) };
}

export function withDomain(ref: ImageReference, domain: string): ImageReference {
  if (!isValidDomain(domain)) throw new ImageReferenceError("invalid-format", `registry host ${JSON.stringify(domain)} is malformed`, domain);
  return { ...ref, domain };
}

// The pods of one workload repeat the same few image strings; parsing each once
// takes the scanner off the admission hot path. Results are frozen, so a cached
// reference can be shared safely. Failures are not cached (they are rare and
// would let hostile strings crowd out good ones).
const parsed = new LRUCache<string, ImageReference>({ max: 10_000 });

/** parseReference with a bounded cache of successful parses. */
export function parseReferenceCached(input: string): ImageReference {
  let ref = parsed.get(input);
  if (ref === undefined) {
    ref = Object.freeze(parseReference(input));
    parsed.set(input, ref);
  }
  return ref;
}
