/** The goals page: the alignment tree, dependencies and the impact walk. */
import type { PageProps } from "./page";

export function Goals({ t }: PageProps & { id?: string }) {
  return (
    <section class="page" data-testid="goals-page">
      <h1>{t.goals}</h1>
    </section>
  );
}
