import dagre, { type GraphLabel, type NodeLabel } from '@dagrejs/dagre';
import { Background, Controls, Handle, MarkerType, Position, ReactFlow, type Edge, type Node, type NodeProps } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { useMemo } from 'react';
import { Link } from 'react-router';
import type { WorkflowStep } from '../../../src/workflows/workflows.ts';
import { StateBadge } from './status.tsx';
import './timeline.css';

/** A step's box; dagre needs every node's size before it lays the graph out. */
const WIDTH = 200;
const HEIGHT = 84;

type StepNode = Node<{ step: WorkflowStep }, 'step'>;

/** A step: its name, the state of its latest job (the box is coloured by it) and a link to that job. */
function StepBox({ data: { step } }: NodeProps<StepNode>) {
  return (
    <div className={`wf-node wf-${step.job.state}`}>
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="wf-name">{step.name}</div>
      <StateBadge state={step.job.state} />
      <div className="wf-job">
        {/* nodrag/nopan: a click on the link follows it instead of starting a pan */}
        <Link className="nodrag nopan" to={`/jobs/${step.job.id}`}>job {step.job.id}</Link>
        {step.runs > 1 && <span> · {step.runs} runs</span>}
      </div>
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}
const NODE_TYPES = { step: StepBox };

/** Layered left to right by dagre: every step right of the steps it waits for; edges labelled with their failure policy. */
function layout(steps: WorkflowStep[]): { nodes: StepNode[]; edges: Edge[]; height: number } {
  const g = new dagre.graphlib.Graph<GraphLabel, NodeLabel, object>();
  g.setGraph({ rankdir: 'LR', nodesep: 24, ranksep: 90 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const s of steps) g.setNode(s.name, { width: WIDTH, height: HEIGHT });
  for (const s of steps) for (const d of s.dependsOn) g.setEdge(d.step, s.name);
  dagre.layout(g);
  const nodes = steps.map((step): StepNode => {
    const at = g.node(step.name);
    return {
      id: step.name, type: 'step', data: { step }, ariaLabel: `step ${step.name}: ${step.job.state}`,
      // dagre gives centres, React Flow wants top-left corners
      position: { x: (at.x ?? 0) - WIDTH / 2, y: (at.y ?? 0) - HEIGHT / 2 },
    };
  });
  const edges = steps.flatMap((s) => s.dependsOn.map((d): Edge => ({
    id: `${d.step}->${s.name}`, source: d.step, target: s.name, label: d.onFailure, className: `wf-edge-${d.onFailure}`,
    markerEnd: { type: MarkerType.ArrowClosed }, ariaLabel: `${s.name} waits for ${d.step} (on failure: ${d.onFailure})`,
  })));
  return { nodes, edges, height: g.graph().height ?? 0 };
}

/** Height of the drawing: the graph's own (a short chain needs little room), within bounds that keep the page readable. */
const MIN_HEIGHT = 200;
const MAX_HEIGHT = 600;

/**
 * A workflow's steps as a graph (React Flow): read-only, panned and zoomed,
 * fitted to the view when first drawn, never enlarged past its real size.
 */
export function WorkflowGraph({ steps }: { steps: WorkflowStep[] }) {
  const { nodes, edges, height } = useMemo(() => layout(steps), [steps]);
  return (
    <div className="wf-graph" style={{ height: Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, height + 80)) }}>
      <ReactFlow nodes={nodes} edges={edges} nodeTypes={NODE_TYPES} fitView fitViewOptions={{ maxZoom: 1 }} minZoom={0.1}
        nodesDraggable={false} nodesConnectable={false} elementsSelectable={false} nodesFocusable={false} edgesFocusable={false}>
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
