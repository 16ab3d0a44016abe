/** A small bar chart in SVG: one bar per point, the latest on the right. */
export function BarChart(props: { values: (number | null)[]; label: string; testId: string; color?: string }) {
  const w = 240;
  const h = 56;
  const max = Math.max(1, ...props.values.map((v) => v ?? 0));
  const bw = w / Math.max(1, props.values.length);
  const last = props.values[props.values.length - 1];
  return (
    <figure class="chart" data-testid={props.testId}>
      <figcaption>
        {props.label}: <strong>{last ?? '–'}</strong> <span class="muted">(max {max})</span>
      </figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} width={w} height={h} role="img" aria-label={props.label}>
        <line x1="0" y1={h - 0.5} x2={w} y2={h - 0.5} class="axis" />
        {props.values.map((v, i) => {
          const bh = v ? Math.max(1, (v / max) * (h - 4)) : 0;
          return <rect x={i * bw + 1} y={h - bh} width={Math.max(1, bw - 2)} height={bh} fill={props.color ?? '#3b82f6'} />;
        })}
      </svg>
    </figure>
  );
}
