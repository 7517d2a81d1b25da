export function SchedulesPage() {
  return <h1>schedules</h1>;
}
