/** The rules page (HR): the rule list, and the editor of one rule. */
import type { PageProps } from "./page";

export function Rules({ t }: PageProps & { id?: string }) {
  return (
    <section class="page" data-testid="rules-page">
      <h1>{t.rules}</h1>
    </section>
  );
}
