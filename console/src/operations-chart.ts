/**
 * The failures bar chart, loaded only when the operations page shows one: Chart.js stays out
 * of the bundle every other page loads. Only the parts a bar chart with a tooltip needs are
 * registered.
 */
import { BarController, BarElement, CategoryScale, Chart, LinearScale, Tooltip } from "chart.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);

/** A chart on ``canvas``, and what replaces its bars. */
export interface Bars {
  show(counts: [string, number][]): void;
  destroy(): void;
}

export function barChart(canvas: HTMLCanvasElement, label: string, colour: string): Bars {
  const chart = new Chart<"bar", number[], string>(canvas, {
    type: "bar",
    data: { labels: [], datasets: [{ label, data: [], backgroundColor: colour, maxBarThickness: 56 }] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
  return {
    show(counts) {
      chart.data.labels = counts.map(([name]) => name);
      const [dataset] = chart.data.datasets;
      if (dataset !== undefined) {
        dataset.data = counts.map(([, count]) => count);
      }
      chart.update();
    },
    destroy() {
      chart.destroy();
    },
  };
}
