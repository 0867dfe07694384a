#!/usr/bin/env node
// The rhost command: a thin shell over the library (dist/src/cli/main.js).
import { main } from '../dist/src/cli/main.js';

const code = await main(process.argv.slice(2), process.env);
process.exit(code);
