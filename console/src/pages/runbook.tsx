export function RunbookPage() {
  return <h1>runbook</h1>;
}
