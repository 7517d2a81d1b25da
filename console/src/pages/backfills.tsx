export function BackfillsPage() {
  return <h1>backfills</h1>;
}
