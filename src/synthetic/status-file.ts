import path from 'node:path';

/** Where the probe writes its result (surface.md); its own module so the CLI can name it without loading the probe's drivers. */
export const PROBE_STATUS_FILE = path.join('out', 'orchestrator-probe', 'status.txt');
