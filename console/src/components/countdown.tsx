import { useEffect, useRef, useState } from 'react';
import { time } from './format.ts';

/** "1:04:05" or "4:07": a clock for time left, whose seconds an operator watches tick. */
function clock(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor(s / 60) % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

/**
 * The time left until `until`, ticking every second. At zero it says the
 * server is taking over (a boost restores itself there) and calls onEnd once,
 * so the page can refetch what the server did.
 */
export function Countdown({ until, onEnd }: { until: string; onEnd?: () => void }) {
  const [now, setNow] = useState(() => Date.now());
  const ended = useRef(false);
  const end = useRef(onEnd);
  end.current = onEnd;
  const left = Date.parse(until) - now;
  useEffect(() => {
    if (left <= 0) {
      if (!ended.current) { ended.current = true; end.current?.(); }
      return;
    }
    const t = setTimeout(() => setNow(Date.now()), Math.min(1000, left));
    return () => clearTimeout(t);
  }, [left]);
  return (
    <time dateTime={until} title={`until ${time(until)}`}>
      {left > 0 ? `${clock(left)} left` : 'ending…'}
    </time>
  );
}
