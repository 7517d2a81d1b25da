/**
 * Claimed jobs waiting for a free slot in the worker, one FIFO per tenant,
 * taken round robin. The server shares each claim across tenants; this keeps
 * that fairness inside the worker too, so a job of a quiet tenant does not
 * wait behind a whole prefetch of a busy tenant's jobs.
 */
export class FairBuffer<T extends { tenantId: string }> {
  /** Insertion order of the map is the round-robin order; a tenant that is taken from moves to the back. */
  private readonly queues = new Map<string, T[]>();
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(item: T): void {
    const q = this.queues.get(item.tenantId);
    if (q) q.push(item);
    else this.queues.set(item.tenantId, [item]);
    this.size++;
  }

  /** The next item round robin across tenants, oldest first within a tenant. */
  shift(): T | undefined {
    for (const [tenant, q] of this.queues) {
      const item = q.shift()!;
      this.queues.delete(tenant);
      if (q.length > 0) this.queues.set(tenant, q);
      this.size--;
      return item;
    }
    return undefined;
  }

  /** Removes and returns the first item matching `match`. */
  remove(match: (item: T) => boolean): T | undefined {
    for (const [tenant, q] of this.queues) {
      const i = q.findIndex(match);
      if (i < 0) continue;
      const [item] = q.splice(i, 1);
      if (q.length === 0) this.queues.delete(tenant);
      this.size--;
      return item;
    }
    return undefined;
  }

  /** Removes and returns everything. */
  takeAll(): T[] {
    const all = [...this.values()];
    this.queues.clear();
    this.size = 0;
    return all;
  }

  *values(): IterableIterator<T> {
    for (const q of this.queues.values()) yield* q;
  }
}
