// `npm run test:mutation` ends here: each mutated file must score >= 90 %, where a
// surviving mutant counts against the score unless test/mutation/equivalent.json
// lists it with the reason it cannot change behaviour. Stryker's own threshold is
// over all files together, which would let one weak file hide behind strong ones.
import { readFileSync } from "node:fs";

interface Mutant { mutatorName: string; replacement: string; status: string; location: { start: { line: number; column: number } } }
interface Report { files: Record<string, { source: string; mutants: Mutant[] }> }
interface Equivalent { file: string; line: string; mutator: string; replacement: string; reason: string }

const MIN_SCORE = 90;
// One report per Stryker run (test/mutation/run.ts makes one per group); files merged.
const paths = process.argv.length > 2 ? process.argv.slice(2) : [".tmp/mutation/mutation.json"];
const report: Report = { files: {} };
for (const p of paths) Object.assign(report.files, (JSON.parse(readFileSync(p, "utf8")) as Report).files);
const equivalents = JSON.parse(readFileSync(new URL("./equivalent.json", import.meta.url), "utf8")) as Equivalent[];
const used = new Set<Equivalent>();
let failed = false;

for (const [file, { source, mutants }] of Object.entries(report.files)) {
  const lines = source.split("\n");
  let killed = 0; let counted = 0; const open: string[] = [];
  for (const m of mutants) {
    if (m.status === "CompileError" || m.status === "Ignored") continue;
    const text = lines[m.location.start.line - 1]!.trim();
    const eq = equivalents.find((e) => e.file === file && text.includes(e.line) && e.mutator === m.mutatorName && e.replacement === m.replacement);
    if (m.status === "Killed" || m.status === "Timeout") { killed++; counted++; continue; }
    if (eq) { used.add(eq); continue; }
    counted++;
    open.push(`  ${m.status} ${file}:${m.location.start.line}:${m.location.start.column} ${m.mutatorName} -> ${m.replacement.slice(0, 70)}\n      ${text.slice(0, 110)}`);
  }
  const score = counted === 0 ? 100 : (100 * killed) / counted;
  const ok = score >= MIN_SCORE;
  failed ||= !ok;
  console.log(`${ok ? "ok  " : "FAIL"} ${score.toFixed(1).padStart(5)} %  ${file} (${killed} killed of ${counted}, ${mutants.length - counted} equivalent or not compiled)`);
  if (open.length) console.log(open.join("\n"));
}
for (const e of equivalents) {
  if (!used.has(e) && report.files[e.file]) console.log(`note: equivalent.json lists a mutant that no longer survives: ${e.file} "${e.line}" ${e.mutator} -> ${e.replacement}`);
}
process.exitCode = failed ? 1 : 0;
