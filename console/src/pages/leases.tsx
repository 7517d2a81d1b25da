export function LeasesPage() {
  return <h1>leases</h1>;
}
