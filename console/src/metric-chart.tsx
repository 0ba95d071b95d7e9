/**
 * A small line chart of the observations behind an alert. Chart.js (only the parts it
 * uses) is loaded when the first chart is drawn, in a file of its own: the inbox's first
 * paint does not wait for it.
 */
import type { Chart } from "chart.js";
import { useEffect, useRef } from "preact/hooks";

import type { Language } from "./i18n";
import type { Observation } from "./inbox-api";

let loaded: Promise<typeof Chart> | null = null;

function chartJs(): Promise<typeof Chart> {
  loaded ??= import("chart.js").then((lib) => {
    lib.Chart.register(
      lib.LineController,
      lib.LineElement,
      lib.PointElement,
      lib.LinearScale,
      lib.Tooltip,
    );
    return lib.Chart;
  });
  return loaded;
}

interface Props {
  points: Observation[];
  /** Event ids of the observations behind the alert: drawn larger. */
  marked: ReadonlySet<string>;
  /** Where the points come from: "metric" (the metric's history) or "alert" (its own). */
  source: string;
  label: string;
  language: Language;
  /** The line's colour, from the alert's severity. */
  colour: string;
}

function day(at: number, language: Language, withTime = false): string {
  return new Intl.DateTimeFormat(language === "zh" ? "zh-CN" : "en-GB", {
    month: "short",
    day: "numeric",
    ...(withTime ? { hour: "2-digit", minute: "2-digit" } : {}),
  }).format(new Date(at));
}

/** The chart; ``data-points`` carries the values drawn, oldest first, for whoever checks. */
export function MetricChart({ points, marked, source, label, language, colour }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const sorted = [...points].sort((a, b) => (a.time < b.time ? -1 : 1));
  const values = sorted.map((point) => point.value);
  const radii = sorted.map((point) => (marked.has(point.event_id) ? 4 : 2));
  const key = JSON.stringify(sorted.map((point) => [point.time, point.value, point.event_id]));

  useEffect(() => {
    let chart: Chart | null = null;
    let current = true;
    void chartJs().then((Drawn) => {
      if (!current || canvas.current === null) {
        return;
      }
      chart = new Drawn(canvas.current, {
        type: "line",
        data: {
          // Times on a linear axis (milliseconds): spaced as they happened, no date adapter.
          datasets: [
            {
              label,
              data: sorted.map((point) => ({ x: Date.parse(point.time), y: point.value })),
              borderColor: colour,
              backgroundColor: colour,
              pointRadius: radii,
              borderWidth: 2,
              tension: 0,
            },
          ],
        },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          plugins: {
          tooltip: {
            callbacks: { title: (items) => day(items[0]?.parsed.x ?? 0, language, true) },
          },
        },
          scales: {
            x: {
              type: "linear",
              ticks: {
                maxRotation: 0,
                maxTicksLimit: 4,
                font: { size: 10 },
                callback: (value) => day(Number(value), language),
              },
            },
            y: { ticks: { maxTicksLimit: 4, font: { size: 10 } } },
          },
        },
      });
      // What Chart.js holds, for whoever checks the drawing against the API.
      const drawn = (chart.data.datasets[0]?.data ?? []) as { y: number }[];
      canvas.current.dataset["drawn"] = JSON.stringify(drawn.map((point) => point.y));
    });
    return () => {
      current = false;
      chart?.destroy();
      if (canvas.current !== null) {
        delete canvas.current.dataset["drawn"];
      }
    };
    // ``key`` stands for the points: a new array of the same points draws nothing new.
  }, [key, radii.join(), label, language, colour]);

  return (
    <figure
      class="metric-chart"
      data-testid="history-chart"
      data-source={source}
      data-points={JSON.stringify(values)}
    >
      <figcaption>{label}</figcaption>
      <div class="metric-chart-box">
        <canvas ref={canvas} role="img" aria-label={label} />
      </div>
    </figure>
  );
}
