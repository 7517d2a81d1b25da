#!/usr/bin/env node
import { fail } from './output.ts';
import { buildProgram } from './program.ts';

// `orch jobs list | head`: once the reader has gone, the rest of the output has no one to read it;
// stopping quietly is what the pipeline expects.
process.stdout.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' ? process.exit(0) : fail(err)));

buildProgram().parseAsync(process.argv).catch(fail);
