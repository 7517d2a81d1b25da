#!/usr/bin/env node
import { fail } from './output.ts';
import { buildProgram } from './program.ts';

buildProgram().parseAsync(process.argv).catch(fail);
