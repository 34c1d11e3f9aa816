// One way to turn ajv's errors into the lines a person reads, for every config
// file apparate loads (webhook and node agent): the key path, what is wrong, and
// the value that was given — never ajv's internal parameters.
import type { ErrorObject } from "ajv";

function unescapePointer(part: string): string {
  return part.replace(/~1/g, "/").replace(/~0/g, "~");
}

/** The value at a JSON pointer ("/a/b/0") inside root, or undefined. */
export function valueAt(root: unknown, pointer: string): unknown {
  let cur: unknown = root;
  for (const part of pointer.split("/").slice(1)) {
    if (cur === null || typeof cur !== "object") return undefined;
    const key = unescapePointer(part);
    if (!Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** "a.b.0" for "/a/b/0"; "(root)" for the document itself. */
export function dottedPath(pointer: string): string {
  return pointer.split("/").slice(1).map(unescapePointer).join(".") || "(root)";
}

function describe(e: ErrorObject, root: unknown): string {
  if (e.keyword === "additionalProperties") {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    const parent = dottedPath(e.instancePath);
    return `${parent === "(root)" ? "" : `${parent}.`}${extra}: unknown key`;
  }
  const value = valueAt(root, e.instancePath);
  return `${dottedPath(e.instancePath)}: ${e.message ?? "invalid"} (got ${JSON.stringify(value)})`;
}

/**
 * The distinct messages for a failed validation. anyOf adds one error per branch
 * plus a summary; the branch errors say more, so the summary is dropped.
 */
export function formatSchemaErrors(errors: readonly ErrorObject[] | null | undefined, root: unknown): string[] {
  const errs = (errors ?? []).filter((e) => e.keyword !== "anyOf");
  return [...new Set(errs.map((e) => describe(e, root)))];
}
