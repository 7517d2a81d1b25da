export function ControlsPage() {
  return <h1>controls</h1>;
}
