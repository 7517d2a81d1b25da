import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  values: (number | null)[];
  color: string;
}

/** A time-series line chart (uPlot): x is unix seconds, one line per series. */
export function TimeChart({ title, times, series, height = 180 }: { title: string; times: number[]; series: Series[]; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join('\u0000');
  useEffect(() => {
    if (!box.current) return;
    const opts: uPlot.Options = {
      title, width: box.current.clientWidth || 600, height,
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: true }))],
      axes: [{}, { size: 60 }],
      legend: { show: true },
    };
    plot.current = new uPlot(opts, [times, ...series.map((s) => s.values)], box.current);
    const resize = () => plot.current?.setSize({ width: box.current?.clientWidth ?? 600, height });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
    // the chart is rebuilt when its set of series changes; new points only update its data
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [title, height, shape]);
  useEffect(() => {
    plot.current?.setData([times, ...series.map((s) => s.values)]);
  }, [times, series]);
  return <figure className="chart" ref={box} aria-label={title} role="img" />;
}
