/** The operations page (operator): consumer lag, dead letters, delivery failures. */
import type { PageProps } from "./page";

export function Operations({ t }: PageProps) {
  return (
    <section class="page" data-testid="operations-page">
      <h1>{t.operations}</h1>
    </section>
  );
}
