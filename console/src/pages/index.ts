import type { ComponentType } from 'react';
import { AuditPage } from './audit.tsx';
import { BackfillsPage } from './backfills.tsx';
import { ControlsPage } from './controls.tsx';
import { DeadLettersPage } from './dead-letters.tsx';
import { EventsPage } from './events.tsx';
import { JobPage } from './job.tsx';
import { JobsPage } from './jobs.tsx';
import { LeasesPage } from './leases.tsx';
import { OverviewPage } from './overview.tsx';
import { RunbookPage } from './runbook.tsx';
import { SchedulesPage } from './schedules.tsx';
import { WorkflowPage, WorkflowsPage } from './workflows.tsx';

export interface Page {
  path: string;
  page: ComponentType;
  /** Its name in the navigation; pages reached from another page (a job, a workflow) have none. */
  nav?: string;
}

/** Every console page, in navigation order. alerts.yaml links /runbook/<AlertName>. */
export const PAGES: Page[] = [
  { path: '/', page: OverviewPage, nav: 'Overview' },
  { path: '/jobs', page: JobsPage, nav: 'Jobs' },
  { path: '/jobs/:jobId', page: JobPage },
  { path: '/dead-letters', page: DeadLettersPage, nav: 'Dead letters' },
  { path: '/leases', page: LeasesPage, nav: 'Leases and workers' },
  { path: '/controls', page: ControlsPage, nav: 'Job types, quotas, pauses' },
  { path: '/schedules', page: SchedulesPage, nav: 'Schedules' },
  { path: '/backfills', page: BackfillsPage, nav: 'Backfills' },
  { path: '/workflows', page: WorkflowsPage, nav: 'Workflows' },
  { path: '/workflows/:workflowId', page: WorkflowPage },
  { path: '/audit', page: AuditPage, nav: 'Audit log' },
  { path: '/events', page: EventsPage, nav: 'Events' },
  { path: '/runbook', page: RunbookPage, nav: 'Runbook' },
  { path: '/runbook/:alert', page: RunbookPage },
];
