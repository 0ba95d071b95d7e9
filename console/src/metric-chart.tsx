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
      lib.CategoryScale,
      lib.Tooltip,
    );
    return lib.Chart;
  });
  return loaded;
}

interface Props {
  points: Observation[];
  label: string;
  language: Language;
  /** The line's colour, from the alert's severity. */
  colour: string;
}

function day(iso: string, language: Language): string {
  return new Intl.DateTimeFormat(language === "zh" ? "zh-CN" : "en-GB", {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  }).format(new Date(iso));
}

/** The chart; ``data-points`` carries the values drawn, oldest first, for whoever checks. */
export function MetricChart({ points, label, language, colour }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const sorted = [...points].sort((a, b) => (a.time < b.time ? -1 : 1));
  const values = sorted.map((point) => point.value);
  const key = JSON.stringify(sorted.map((point) => [point.time, point.value]));

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
          labels: sorted.map((point) => day(point.time, language)),
          datasets: [
            {
              label,
              data: values,
              borderColor: colour,
              backgroundColor: colour,
              pointRadius: 3,
              borderWidth: 2,
              tension: 0,
            },
          ],
        },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          plugins: { tooltip: { enabled: true } },
          scales: {
            x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 4, font: { size: 10 } } },
            y: { ticks: { maxTicksLimit: 4, font: { size: 10 } } },
          },
        },
      });
      // What Chart.js holds, for whoever checks the drawing against the API.
      canvas.current.dataset["drawn"] = JSON.stringify(chart.data.datasets[0]?.data ?? []);
    });
    return () => {
      current = false;
      chart?.destroy();
    };
    // ``key`` stands for the points: a new array of the same points draws nothing new.
  }, [key, label, language, colour]);

  return (
    <figure class="metric-chart" data-testid="history-chart" data-points={JSON.stringify(values)}>
      <figcaption>{label}</figcaption>
      <div class="metric-chart-box">
        <canvas ref={canvas} role="img" aria-label={label} />
      </div>
    </figure>
  );
}
