#!/usr/bin/env node
// apparate: one binary; src/cli/main.ts runs the subcommand.
import { main } from "./cli/main.js";

// A reader that stops early (`| head`) closes the pipe: end quietly, as Unix tools do.
process.stdout.on("error", (e: NodeJS.ErrnoException) => { if (e.code === "EPIPE") process.exit(process.exitCode ?? 0); else throw e; });

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
