export function WorkflowsPage() {
  return <h1>Workflows</h1>;
}

export function WorkflowPage() {
  return <h1>Workflow</h1>;
}
