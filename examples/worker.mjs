// A remote worker: claims "email" jobs over the HTTP bridge, reports progress, acks.
// Run it next to `npm start`:  node examples/worker.mjs
import { createWorker, NonRetryableError } from '../dist/index.js';

const worker = await createWorker({
  apiUrl: process.env.ORCH_API_URL ?? 'http://127.0.0.1:8080',
  tenant: process.env.ORCH_TENANT ?? 'default',
  jobTypes: ['email'],
  concurrency: 4,
  async handler(job) {
    console.log(`job ${job.id} attempt ${job.attempt}: sending to ${job.payload.to}`);
    if (!job.payload.to) throw new NonRetryableError('payload.to is missing');
    job.progress(0.5, 'rendering');
    await new Promise((resolve) => setTimeout(resolve, 500));
    return { delivered: true, at: new Date().toISOString() };
  },
});
worker.on('completed', (lease) => console.log(`job ${lease.jobId} succeeded`));
console.log(`worker ${worker.id} waiting for jobs (Ctrl-C stops it gracefully)`);
