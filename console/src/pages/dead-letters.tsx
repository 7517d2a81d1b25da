export function DeadLettersPage() {
  return <h1>dead-letters</h1>;
}
