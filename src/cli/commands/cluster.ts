import type { Command } from 'commander';
import { print } from '../output.ts';
import { clientFor } from './jobs.ts';

const REPLICA_COLUMNS = ['id', 'state', 'leader', 'host', 'version', 'notify', 'lastSeenAt', 'services'];

/** `orch cluster status`: the replicas, which one leads and since when, what runs where. */
export function registerClusterCommands(program: Command): void {
  program.command('cluster').description('the replicas sharing the database and their leader')
    .command('status')
    .description('replicas (up, stopped, lost), the leader with its term and since when, the services on each')
    .action(async (_o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const c = await client.clusterStatus();
      if (output !== 'json') {
        process.stdout.write(c.leader?.live
          ? `leader: ${c.leader.replicaId} (term ${c.leader.term}, since ${c.leader.since})\n`
          : `leader: none${c.leader ? ` (term ${c.leader.term} of ${c.leader.replicaId} expired at ${c.leader.expiresAt}; a replica takes over within two renew intervals)` : ''}\n`);
      }
      print(output, c, c.replicas.map((r) => ({ ...r, leader: r.leader ? 'yes' : '', services: r.services.join(',') })), REPLICA_COLUMNS);
    });
}
