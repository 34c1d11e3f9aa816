// Reading Kubernetes documents (YAML or JSON, one or many) from files or stdin for
// the CLI, with errors that name the file, the line and the column.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ApparateError } from "../errors.js";

export class InputError extends ApparateError {}

export function readInput(path: string): string {
  try {
    return path === "-" ? readFileSync(0, "utf8") : readFileSync(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "ENOENT" ? "no such file" : e.code === "EISDIR" ? "is a directory" : e.code === "EACCES" ? "permission denied" : e.message;
    throw new InputError("input-unreadable", `${path === "-" ? "stdin" : path}: ${why}`, path, { cause: err });
  }
}

/** Every document of a YAML/JSON stream as plain data; the first syntax error is thrown with its position. */
export function parseDocuments(text: string, source: string): unknown[] {
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: false });
  // parseAllDocuments returns an EmptyStream (no array methods) for an empty input.
  if (!Array.isArray(docs)) return [];
  const out: unknown[] = [];
  for (const d of docs) {
    const e = d.errors[0];
    if (e) {
      const pos = e.linePos?.[0];
      const where = pos ? `${source}:${pos.line}:${pos.col}` : source;
      // yaml's message ends with a code excerpt on following lines: keep the sentence.
      const first = e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      throw new InputError("input-yaml", `${where}: ${first}`, source);
    }
    out.push(d.toJS({ maxAliasCount: 100 }));
  }
  return out;
}
